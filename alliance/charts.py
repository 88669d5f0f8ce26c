"""The patient dashboard's charts as Plotly figures, each with the table of its numbers.

Pure functions over plain rows (no database): `dashboard.dashboard_facts` reads the rows, the
view hands the charts to the template, and `static/js/charts.js` draws the figures with the
vendored plotly.js. Every chart has a table, for people who prefer numbers and for screen
readers; the figure is a picture of the same rows.
"""

import datetime
import functools
import json
from dataclasses import dataclass, field

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from outcomes import scoring
from sessions.models import SessionKind

KIND_LABELS = {
    "preparation": "Preparation",
    "dosing": "Dosing",
    "integration": "Integration",
    "follow_up": "Follow-up",
}
KIND_SYMBOLS = {
    "preparation": "circle",
    "dosing": "diamond",
    "integration": "square",
    "follow_up": "triangle-up",
}
# Which scales each chart draws comes from the instrument's newest definition (its subscales, its
# response and remission rule); only their colours are chosen here.
ALLIANCE_COLOURS = {"total": "#0d6efd", "bond": "#d63384", "goal": "#198754", "task": "#fd7e14"}
DEPRESSION = [
    ("phq-9", "PHQ-9", "#0d6efd"),
    ("qids-sr-16", "QIDS-SR-16", "#6610f2"),
    ("grid-hamd-17", "GRID-HAMD-17", "#052c65"),
]
MEQ_COLOURS = ["#6f42c1", "#d63384", "#0dcaf0", "#fd7e14"]
PIQ_COLOURS = ["#198754", "#20c997"]
CHARTED = ("wai-sr", *(code for code, _, _ in DEPRESSION), "meq-30", "piq", "ebi")
BAND_COLOURS = ["#d1e7dd", "#fff3cd", "#ffe5d0", "#f8d7da", "#f1aeb5"]
PLOT_FONT = {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 13}


@dataclass(frozen=True)
class ResponseRow:
    response_id: int
    at: datetime.datetime  # local wall-clock time
    code: str
    definition: dict
    # scale -> (value, mean, band), optionally followed by prorated (False when absent)
    scores: dict[str, tuple]
    extras: dict
    session_id: int | None
    session_label: str


@dataclass(frozen=True)
class SessionMark:
    session_id: int
    at: datetime.datetime
    kind: str
    label: str
    status: str  # display text
    upcoming: bool = False  # scheduled and still ahead


@dataclass(frozen=True)
class FlagMark:
    at: datetime.datetime
    kind: str  # display text
    severity: str
    status: str
    is_open: bool
    summary: str
    url: str


@dataclass(frozen=True)
class BandMark:
    """The expected bond band at one of the patient's protocol steps (alliance.trajectories):
    earlier patients' percentiles, or the published default when too few were rated there."""

    at: datetime.datetime  # the patient's session at this step (local time)
    label: str
    n: int
    p10: float | None
    p25: float | None
    p50: float | None
    is_default: bool
    patient_bond: float | None = None
    percentile_rank: float | None = None


@dataclass(frozen=True)
class VitalsRow:
    at: datetime.datetime  # local wall-clock time, when measured
    session_label: str
    point: str
    systolic: int
    diastolic: int
    heart_rate: int
    spo2: int
    alerts: list[str]


@dataclass(frozen=True)
class EventRow:
    onset: datetime.datetime
    session_label: str
    description: str
    grade: str
    serious: str  # "No" or "Yes: criteria"
    relatedness: str
    outcome: str


@dataclass(frozen=True)
class DashboardFacts:
    responses: list[ResponseRow]
    sessions: list[SessionMark]
    flags: list[FlagMark]
    bond_threshold: float
    # The newest definition of each instrument in CHARTED, by code.
    definitions: dict[str, dict]
    bands: list[BandMark] = field(default_factory=list)
    band_min_patients: int = 20
    vitals: list[VitalsRow] = field(default_factory=list)
    adverse_events: list[EventRow] = field(default_factory=list)
    # The alert limits of the latest dosing's program (sessions.monitoring.Limits), or None.
    vital_limits: object = None


@dataclass
class Table:
    caption: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)


@dataclass
class Chart:
    slug: str
    title: str
    description: str
    figure: dict | None  # None when there is nothing to draw
    tables: list[Table]
    empty: str
    notes: list[str] = field(default_factory=list)
    # The shared date range of the alliance and depression charts (see `shared_span`): the
    # treatment period, shown first, and everything, for the "Show follow-ups" switch.
    span: dict | None = None


def _iso(moment: datetime.datetime) -> str:
    # plotly.js reads wall-clock strings; an offset would be dropped or refused.
    return moment.strftime("%Y-%m-%d %H:%M")


def _day(moment: datetime.datetime) -> str:
    return f"{moment:%-d %b %Y}"


def _num(value: float | None, places: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:.{places}f}".rstrip("0").rstrip(".") if places else f"{value:.0f}"


@dataclass(frozen=True)
class _Stored:
    value: float | None
    mean: float | None
    band: str
    prorated: bool = False


def _primary(response: ResponseRow, scale: str = "total") -> scoring.PrimaryScore:
    """The scale as clinicians read it (PHQ-9 sum, WAI-SR mean, MEQ-30 % of max)."""
    stored = {code: _Stored(*entry[:4]) for code, entry in response.scores.items()}
    return scoring.primary_score(response.definition, stored, response.extras, scale=scale)


def _shown(primary: scoring.PrimaryScore) -> str:
    """ "16 sum", "14 sum, prorated", "3.25 mean"; "—" when not scorable."""
    if primary.value is None:
        return "—"
    return f"{primary.shown} {primary.label}" + (", prorated" if primary.prorated else "")


def _subscales(facts: DashboardFacts, code: str) -> list[tuple[str, str]]:
    """(code, name) of an instrument's subscales, in its definition's order."""
    definition = facts.definitions.get(code, {})
    return [(sub["code"], sub["name"]) for sub in definition.get("subscales", [])]


def _alliance_scales(facts: DashboardFacts) -> list[tuple[str, str, str]]:
    # The bond comes first: it is the subscale that carries the signal.
    subscales = sorted(_subscales(facts, "wai-sr"), key=lambda scale: scale[0] != "bond")
    scales = [("total", "Total"), *subscales]
    return [(scale, label, ALLIANCE_COLOURS.get(scale, "#6c757d")) for scale, label in scales]


def _layout(**extra) -> dict:
    layout = {
        "font": PLOT_FONT,
        "margin": {"l": 60, "r": 20, "t": 30, "b": 40},
        "legend": {"orientation": "h", "y": -0.18},
        "hovermode": "closest",
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
    }
    layout.update(extra)
    return layout


# The dashboard's figures are written as the plain JSON plotly.js draws, exactly what
# `go.Figure(...).to_plotly_json()` gives for them: plotly.graph_objects validates every
# property as it is set, which was most of the patient dashboard's time at 10,000 patients.
# Tests validate each figure again with plotly and require it unchanged, and compare it with
# the figure built through plotly.


@functools.cache
def _template() -> dict:
    """plotly's default template, which `go.Figure` writes into every figure's layout (its
    colours and grid lines are part of what the browser draws). Built once per process and
    shared by every figure: nothing writes into it."""
    return go.Figure().to_plotly_json()["layout"]["template"]


@functools.cache
def _grid_json(rows: int, cols: int, options: tuple) -> str:
    layout = make_subplots(rows=rows, cols=cols, **dict(options)).to_plotly_json()["layout"]
    layout.pop("template", None)
    return json.dumps(layout)


def _grid(*, rows: int, cols: int, **options) -> dict:
    """The axes (domains, anchors, shared x) and subplot titles that `make_subplots` lays
    out, as a fresh dict. Computed once per arrangement: they depend on the number of panels
    and their titles only, never on a patient's data."""
    frozen = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items())
    return json.loads(_grid_json(rows, cols, frozen))


def _merge(into: dict, extra: dict) -> dict:
    """`update_layout`: nested dicts merge, anything else (lists too) replaces."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def _figure(data: list[dict], layout: dict, grid: dict | None = None) -> dict:
    return {"data": data, "layout": _merge({"template": _template(), **(grid or {})}, layout)}


def _trace(kind: str, *, panel: int | None = None, **properties) -> dict:
    """One trace as plotly writes it: its type last, then the axes of its panel (numbered
    from 1, row by row) when the figure has several."""
    trace = {**properties, "type": kind}
    if panel is not None:
        trace["xaxis"] = _axis("x", panel)
        trace["yaxis"] = _axis("y", panel)
    return trace


def _axis(letter: str, panel: int) -> str:
    return letter if panel == 1 else f"{letter}{panel}"


def _dosings(facts: DashboardFacts) -> list[SessionMark]:
    return [s for s in facts.sessions if s.kind == SessionKind.DOSING]


def _dosing_lines(dosings: list[SessionMark]) -> tuple[list[dict], list[dict]]:
    shapes, notes = [], []
    for number, dosing in enumerate(dosings, start=1):
        shapes.append(
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": _iso(dosing.at),
                "x1": _iso(dosing.at),
                "y0": 0,
                "y1": 1,
                "line": {"color": "#6f42c1", "width": 2, "dash": "dot"},
            }
        )
        notes.append(
            {
                "x": _iso(dosing.at),
                "y": 1,
                "xref": "x",
                "yref": "paper",
                "yanchor": "bottom",
                "text": f"D{number}",
                "hovertext": f"{dosing.label}, {_day(dosing.at)}",
                "showarrow": False,
                "font": {"color": "#6f42c1", "size": 11},
            }
        )
    return shapes, notes


def alliance_chart(facts: DashboardFacts) -> Chart:
    """WAI-SR total and subscales (item means), the weak-bond band, sessions, dosings, flags."""
    ratings = [r for r in facts.responses if r.code == "wai-sr"]
    scales = _alliance_scales(facts)
    table = Table(
        caption="WAI-SR ratings (item means, 1 to 5; higher is a stronger alliance)",
        headers=["Date", "Session"] + [f"{label} (mean)" for _, label, _ in scales],
        rows=[
            [_day(r.at), r.session_label or "—"]
            + [_num(r.scores.get(scale, (None, None, ""))[1]) for scale, _, _ in scales]
            for r in ratings
        ],
    )
    flags = Table(
        caption="Flags, newest first",
        headers=["Raised", "Flag", "Severity", "Status", "Evidence"],
        rows=[
            [_day(f.at), f.kind, f.severity, f.status, f.summary]
            for f in sorted(facts.flags, key=lambda f: f.at, reverse=True)
        ],
    )
    chart = Chart(
        slug="alliance",
        title="Alliance over time",
        description=(
            "WAI-SR total, bond, goal and task as item means from 1 to 5. The shaded band is "
            f"below the weak-bond threshold ({_num(facts.bond_threshold)}); dotted lines are "
            "dosing days (D1, D2, …); symbols along the bottom are sessions, along the top flags."
        ),
        figure=None,
        tables=[table, flags],
        empty="No WAI-SR ratings yet. Enter one from a session page after a preparation session.",
    )
    if not ratings and not facts.flags:
        return chart
    traces = []
    for scale, label, colour in scales:
        points = [(r, r.scores[scale][1]) for r in ratings if scale in r.scores]
        points = [(r, mean) for r, mean in points if mean is not None]
        traces.append(
            _trace(
                "scatter",
                x=[_iso(r.at) for r, _ in points],
                y=[mean for _, mean in points],
                mode="lines+markers",
                name=label,
                line={"color": colour, "width": 3.5 if scale == "bond" else 2},
                text=[r.session_label for r, _ in points],
                hovertemplate=f"{label} %{{y:.2f}}<br>%{{text}}<br>%{{x|%d %b %Y}}<extra></extra>",
            )
        )
    for kind, label in KIND_LABELS.items():
        sessions = [s for s in facts.sessions if s.kind == kind]
        if not sessions:
            continue
        traces.append(
            _trace(
                "scatter",
                x=[_iso(s.at) for s in sessions],
                y=[0.75] * len(sessions),
                mode="markers",
                name=f"{label} sessions",
                marker={"symbol": KIND_SYMBOLS[kind], "size": 10, "color": "#6c757d"},
                text=[f"{s.label} ({s.status})" for s in sessions],
                hovertemplate="%{text}<br>%{x|%d %b %Y %H:%M}<extra></extra>",
            )
        )
    flag_traces = ((True, "Open flags", "#dc3545"), (False, "Past flags", "#adb5bd"))
    for is_open, name, colour in flag_traces:
        marks = [f for f in facts.flags if f.is_open is is_open]
        if not marks:
            continue
        traces.append(
            _trace(
                "scatter",
                x=[_iso(f.at) for f in marks],
                y=[5.25] * len(marks),
                mode="markers",
                name=name,
                marker={"symbol": "triangle-down", "size": 13, "color": colour},
                text=[f"{f.kind} ({f.status}): {f.summary}" for f in marks],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    traces += _expected_band(chart, facts)
    shapes, notes = _dosing_lines(_dosings(facts))
    shapes.insert(
        0,
        {
            "type": "rect",
            "xref": "paper",
            "yref": "y",
            "x0": 0,
            "x1": 1,
            "y0": 1,
            "y1": facts.bond_threshold,
            "fillcolor": "rgba(220, 53, 69, 0.10)",
            "line": {"width": 0},
            "layer": "below",
        },
    )
    notes.append(
        {
            "xref": "paper",
            "yref": "y",
            "x": 0,
            "y": facts.bond_threshold,
            "xanchor": "left",
            "yanchor": "top",
            "text": f"weak bond: below {_num(facts.bond_threshold)}",
            "showarrow": False,
            "font": {"color": "#b02a37", "size": 11},
        }
    )
    chart.figure = _figure(
        traces,
        _layout(
            height=440,
            shapes=shapes,
            annotations=notes,
            yaxis={
                "range": [0.55, 5.45],
                "tickvals": [1, 2, 3, 4, 5],
                "title": {"text": "Item mean"},
            },
            xaxis={"type": "date", "title": {"text": ""}},
        ),
    )
    return chart


def _expected_band(chart: Chart, facts: DashboardFacts) -> list[dict]:
    """Earlier patients' bond at each of this patient's protocol steps: a shaded band from
    the 10th to the 25th percentile and a line at the median; steps with too few earlier
    patients show the published default, labelled, and no band. Returns its traces."""
    traces = []
    if not facts.bands:
        return traces
    clinic = [b for b in facts.bands if not b.is_default]
    if clinic:
        x = [_iso(b.at) for b in clinic]
        hover = [f"{b.label}: earlier patients (n = {b.n})" for b in clinic]
        traces.append(
            _trace(
                "scatter",
                x=x,
                y=[b.p10 for b in clinic],
                mode="lines",
                line={"color": "rgba(214, 51, 132, 0.35)", "width": 1},
                name="Expected bond: 10th percentile",
                text=hover,
                hovertemplate="%{text}<br>10th percentile %{y:.2f}<extra></extra>",
            )
        )
        traces.append(
            _trace(
                "scatter",
                x=x,
                y=[b.p25 for b in clinic],
                mode="lines",
                fill="tonexty",
                fillcolor="rgba(214, 51, 132, 0.15)",
                line={"color": "rgba(214, 51, 132, 0.35)", "width": 1},
                name="Expected bond: 10th to 25th percentile",
                text=hover,
                hovertemplate="%{text}<br>25th percentile %{y:.2f}<extra></extra>",
            )
        )
        traces.append(
            _trace(
                "scatter",
                x=x,
                y=[b.p50 for b in clinic],
                mode="lines",
                line={"color": "rgba(214, 51, 132, 0.6)", "width": 1.5, "dash": "dash"},
                name="Expected bond: median of earlier patients",
                text=hover,
                hovertemplate="%{text}<br>median %{y:.2f}<extra></extra>",
            )
        )
    default = [b for b in facts.bands if b.is_default]
    if default:
        traces.append(
            _trace(
                "scatter",
                x=[_iso(b.at) for b in default],
                y=[b.p10 for b in default],
                mode="markers",
                marker={"symbol": "line-ew-open", "size": 18, "color": "#b02a37"},
                name="Expected bond: published default (too few earlier patients)",
                text=[f"{b.label}: default {_num(b.p10)}; n = {b.n}" for b in default],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    chart.notes.append(
        "The pink band is where earlier patients of this protocol rated the bond at the same "
        "step (10th to 25th percentile, dashed line the median; this patient left out). "
        f"Steps with fewer than {facts.band_min_patients} earlier patients show the "
        'published default instead, marked "default".'
    )
    chart.tables.append(
        Table(
            caption="Bond against earlier patients at the same protocol step",
            headers=["Step", "Date", "Bond (mean)", "Percentile", "10th", "25th", "Median", "n"],
            rows=[
                [
                    b.label,
                    _day(b.at),
                    _num(b.patient_bond),
                    "—" if b.percentile_rank is None else f"{b.percentile_rank:.0f}",
                    f"{_num(b.p10)} (default)" if b.is_default else _num(b.p10),
                    _num(b.p25),
                    _num(b.p50),
                    str(b.n),
                ]
                for b in facts.bands
            ],
        )
    )
    return traces


def _outcome_rule(facts: DashboardFacts, code: str) -> dict | None:
    """The newest definition of the instrument when it states a response and remission rule."""
    definition = facts.definitions.get(code)
    if definition is None or "treatment_outcome" not in definition.get("special", {}):
        return None
    return definition


def _outcome_status(definition: dict | None, baseline, value) -> dict:
    if definition is None or baseline is None or value is None:
        return {}
    try:
        return scoring.treatment_outcome(definition, baseline, value)
    except (scoring.DefinitionError, ValueError):
        return {}


def outcomes_chart(facts: DashboardFacts) -> Chart:
    """Depression totals with their severity bands; response and remission against baseline."""
    present = [
        (label, colour, [r for r in facts.responses if r.code == code and "total" in r.scores])
        for code, label, colour in DEPRESSION
    ]
    present = [(label, colour, rows) for label, colour, rows in present if rows]
    table = Table(
        caption="Depression scores (sums of the items; lower is better). Baseline is the first "
        "score.",
        headers=["Date", "Measure", "Score", "Severity", "Change from baseline", "Outcome"],
    )
    chart = Chart(
        slug="outcomes",
        title="Depression over time",
        description=(
            "PHQ-9, QIDS-SR-16 and GRID-HAMD-17 totals on their severity bands. A star marks "
            "response (a drop of at least half from baseline), a ring remission."
        ),
        figure=None,
        tables=[table],
        empty="No depression measures yet.",
    )
    if not present:
        return chart
    grid = _grid(
        rows=len(present),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=[label for label, _, _ in present],
    )
    shapes, _ = _dosing_lines(_dosings(facts))
    traces, band_labels = [], []
    definitions_seen = set()
    for row, (label, colour, rows) in enumerate(present, start=1):
        definition = rows[-1].definition
        rule = _outcome_rule(facts, rows[-1].code)
        baseline = rows[0].scores["total"][0]
        axis = "y" if row == 1 else f"y{row}"
        for index, band in enumerate(definition.get("bands", [])):
            shapes.append(
                {
                    "type": "rect",
                    "xref": "x domain" if row == 1 else f"x{row} domain",
                    "yref": axis,
                    "x0": 0,
                    "x1": 1,
                    "y0": band["min"],
                    "y1": band["max"] + 1 if index < len(definition["bands"]) - 1 else band["max"],
                    "fillcolor": BAND_COLOURS[min(index, len(BAND_COLOURS) - 1)],
                    "opacity": 0.55,
                    "line": {"width": 0},
                    "layer": "below",
                }
            )
        responded, remitted = [], []
        for response in rows:
            value, _, band = response.scores["total"][:3]
            status = _outcome_status(rule, baseline, value) if response is not rows[0] else {}
            words = []
            if status.get("response"):
                words.append("response")
                responded.append((response, value))
            if status.get("remission"):
                words.append("remission")
                remitted.append((response, value))
            change = status.get("percent_change")
            table.rows.append(
                [
                    _day(response.at),
                    label,
                    _shown(_primary(response)),
                    band or "—",
                    "baseline"
                    if response is rows[0]
                    else ("—" if change is None else f"{change:+g}%"),
                    ", ".join(words) or "—",
                ]
            )
        traces.append(
            _trace(
                "scatter",
                panel=row,
                x=[_iso(r.at) for r in rows],
                y=[r.scores["total"][0] for r in rows],
                mode="lines+markers",
                name=label,
                line={"color": colour, "width": 2},
                text=[r.scores["total"][2] for r in rows],
                hovertemplate=f"{label} %{{y}} (%{{text}})<br>%{{x|%d %b %Y}}<extra></extra>",
            )
        )
        for marks, name, symbol in (
            (responded, "Response", "star"),
            (remitted, "Remission", "circle-open"),
        ):
            if marks:
                traces.append(
                    _trace(
                        "scatter",
                        panel=row,
                        x=[_iso(r.at) for r, _ in marks],
                        y=[v for _, v in marks],
                        mode="markers",
                        name=name,
                        legendgroup=name,
                        showlegend=name not in definitions_seen,
                        marker={"symbol": symbol, "size": 16, "color": "#198754"},
                        hovertemplate=f"{name}<br>%{{x|%d %b %Y}}<extra></extra>",
                    )
                )
                definitions_seen.add(name)
        for band in definition.get("bands", []):
            # Each band says its name at the right edge, so the colours need no legend.
            band_labels.append(
                {
                    "xref": "x domain" if row == 1 else f"x{row} domain",
                    "yref": axis,
                    "x": 1,
                    "y": (band["min"] + band["max"]) / 2,
                    "xanchor": "right",
                    "text": band["label"],
                    "showarrow": False,
                    "font": {"size": 11, "color": "#495057"},
                }
            )
        top = definition["bands"][-1]["max"] if definition.get("bands") else None
        yaxis = grid[f"yaxis{row if row > 1 else ''}"]
        yaxis["title"] = {"text": "Total"}
        if top:
            yaxis["range"] = [0, top]
        if rule:
            source = rule["special"]["treatment_outcome"].get("source", "")
            chart.notes.append(f"{label}: {source}")
    for name in [key for key in grid if key.startswith("xaxis")]:
        grid[name]["type"] = "date"
    layout = _layout(height=260 * len(present) + 80)
    if shapes:
        layout["shapes"] = shapes
    # After the subplot titles.
    layout["annotations"] = [*grid.pop("annotations", []), *band_labels]
    chart.figure = _figure(traces, layout, grid)
    return chart


def _dosing_for(response: ResponseRow, dosings: list[SessionMark]) -> SessionMark | None:
    """The dosing a post-dosing questionnaire describes: its own session, else the last before."""
    for dosing in dosings:
        if dosing.session_id == response.session_id:
            return dosing
    before = [d for d in dosings if d.at <= response.at]
    return before[-1] if before else None


def acute_chart(facts: DashboardFacts) -> Chart:
    """MEQ-30 subscales (% of maximum) against the 60% line, PIQ subscales and EBI per dosing."""
    dosings = _dosings(facts)
    meq_scales, piq_scales = _subscales(facts, "meq-30"), _subscales(facts, "piq")
    acute = [r for r in facts.responses if r.code in ("meq-30", "piq", "ebi")]
    by_dosing: dict[str, dict[str, ResponseRow]] = {}
    order: list[str] = []
    # Axis labels as on the time axes (D1, D2, ...); the table spells each dosing out.
    ticks: dict[str, str] = {}
    for response in acute:
        dosing = _dosing_for(response, dosings)
        key = f"{dosing.label}, {_day(dosing.at)}" if dosing else f"{_day(response.at)}"
        if key not in by_dosing:
            by_dosing[key] = {}
            order.append(key)
            ticks[key] = f"D{dosings.index(dosing) + 1}" if dosing else _day(response.at)
        by_dosing[key][response.code] = response  # the latest of each per dosing
    table = Table(
        caption="Acute experience per dosing (D1 is the first dosing, D2 the second, ...)",
        headers=["Dosing"]
        + [f"MEQ-30 {label} (% of max)" for _, label in meq_scales]
        + ["Complete mystical experience"]
        + [f"PIQ {label} (mean 0–5)" for _, label in piq_scales]
        + ["EBI (mean 0–100)"],
    )
    for key in order:
        rows = by_dosing[key]
        meq, piq, ebi = rows.get("meq-30"), rows.get("piq"), rows.get("ebi")
        complete = meq.extras.get("complete_mystical_experience") if meq else None
        table.rows.append(
            [f"{ticks[key]}: {key}"]
            + [_num(_percent(meq, scale), 0) if meq else "—" for scale, _ in meq_scales]
            + [{True: "yes", False: "no", None: "—"}[complete]]
            + [_num(_mean(piq, scale)) if piq else "—" for scale, _ in piq_scales]
            + [_num(_mean(ebi, "total"), 1) if ebi else "—"]
        )
    chart = Chart(
        slug="acute",
        title="Acute experience per dosing",
        description=(
            "MEQ-30 subscales as a percentage of the maximum, with the 60% line that marks a "
            "complete mystical experience when all four reach it; PIQ subscales and the EBI."
        ),
        figure=None,
        tables=[table],
        empty="No MEQ-30, PIQ or EBI answers yet; they are due after each dosing.",
    )
    if not acute:
        return chart
    grid = _grid(
        rows=1,
        cols=3,
        column_widths=[0.5, 0.3, 0.2],
        horizontal_spacing=0.07,
        subplot_titles=["MEQ-30 (% of maximum)", "PIQ (item mean, 0–5)", "EBI (mean, 0–100)"],
    )
    x = [ticks[k] for k in order]
    meq_bars = [
        _trace(
            "bar",
            panel=1,
            x=x,
            y=[_percent(by_dosing[k].get("meq-30"), scale) for k in order],
            name=label,
            marker={"color": MEQ_COLOURS[index % len(MEQ_COLOURS)]},
            hovertemplate=f"{label} %{{y:.0f}}%<extra></extra>",
        )
        for index, (scale, label) in enumerate(meq_scales)
    ]
    piq_bars = [
        _trace(
            "bar",
            panel=2,
            x=x,
            y=[_mean(by_dosing[k].get("piq"), scale) for k in order],
            name=f"PIQ {label}",
            marker={"color": PIQ_COLOURS[index % len(PIQ_COLOURS)]},
            hovertemplate=f"{label} %{{y:.2f}}<extra></extra>",
        )
        for index, (scale, label) in enumerate(piq_scales)
    ]
    ebi_bar = _trace(
        "bar",
        panel=3,
        x=x,
        y=[_mean(by_dosing[k].get("ebi"), "total") for k in order],
        name="EBI",
        marker={"color": "#0d6efd"},
        hovertemplate="EBI %{y:.1f}<extra></extra>",
    )
    # The 60% line across the MEQ-30 panel, as add_hline(row=1, col=1) draws it.
    line_at_60 = {
        "type": "line",
        "xref": "x domain",
        "yref": "y",
        "x0": 0,
        "x1": 1,
        "y0": 60,
        "y1": 60,
        "line": {"color": "#dc3545", "dash": "dash"},
    }
    label_60 = {
        "xref": "x domain",
        "yref": "y",
        "x": 0,
        "y": 60,
        "xanchor": "left",
        "yanchor": "bottom",
        "text": "60%",
        "showarrow": False,
    }
    chart.figure = _figure(
        [*meq_bars, *piq_bars, ebi_bar],
        _layout(
            height=420,
            barmode="group",
            yaxis={"range": [0, 100]},
            yaxis2={"range": [0, 5]},
            yaxis3={"range": [0, 100]},
            shapes=[line_at_60],
            # After the subplot titles.
            annotations=[*grid.pop("annotations", []), label_60],
        ),
        grid,
    )
    return chart


def _mean(response: ResponseRow | None, scale: str) -> float | None:
    if response is None or scale not in response.scores:
        return None
    return response.scores[scale][1]


def _percent(response: ResponseRow | None, scale: str) -> float | None:
    if response is None or scale not in response.scores:
        return None
    return _primary(response, scale).value


def vitals_chart(facts: DashboardFacts) -> Chart:
    """Blood pressure, heart rate and SpO2 at every dosing, against the program's alert
    limits; adverse events in a table beneath."""
    limits = facts.vital_limits
    readings = Table(
        caption="Vital signs on dosing days",
        headers=[
            "Measured",
            "Dosing",
            "Point",
            "BP (mmHg)",
            "HR (/min)",
            "SpO₂ (%)",
            "Out of range",
        ],
        rows=[
            [
                f"{_day(v.at)} {v.at:%H:%M}",
                v.session_label,
                v.point or "—",
                f"{v.systolic}/{v.diastolic}",
                str(v.heart_rate),
                str(v.spo2),
                "; ".join(v.alerts) or "—",
            ]
            for v in facts.vitals
        ],
    )
    events = Table(
        caption="Adverse events",
        headers=["Onset", "Session", "Event", "Grade", "Serious", "Related", "Outcome"],
        rows=[
            [
                f"{_day(e.onset)} {e.onset:%H:%M}",
                e.session_label or "between sessions",
                e.description,
                e.grade,
                e.serious,
                e.relatedness,
                e.outcome,
            ]
            for e in facts.adverse_events
        ],
    )
    notes = []
    if limits is not None:
        notes.append(
            f"Alert limits: before the dose above {limits.pre_dose_systolic_above}/"
            f"{limits.pre_dose_diastolic_above} mmHg; afterwards above {limits.systolic_above}/"
            f"{limits.diastolic_above} mmHg, heart rate outside {limits.heart_rate_below}–"
            f"{limits.heart_rate_above}/min, SpO₂ below {limits.spo2_below}%."
        )
    if facts.adverse_events:
        notes.append(f"{len(facts.adverse_events)} adverse event(s) recorded; see the table.")
    chart = Chart(
        slug="vitals",
        title="Vital signs and adverse events",
        description=(
            "Blood pressure, heart rate and SpO₂ measured on dosing days, with the program's "
            "alert limits as dashed lines; adverse events are listed beneath."
        ),
        figure=None,
        tables=[readings, events],
        empty="No vital signs recorded yet; they are taken in the room on dosing days.",
        notes=notes,
    )
    if not facts.vitals:
        return chart
    x = [_iso(v.at) for v in facts.vitals]
    grid = _grid(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12,
        subplot_titles=["Blood pressure (mmHg) and heart rate (/min)", "SpO₂ (%)"],
    )
    traces = [
        _trace(
            "scatter",
            panel=1,
            x=x,
            y=values,
            name=name,
            mode="lines+markers",
            marker={"color": colour},
            hovertemplate=f"{name} %{{y}}<extra></extra>",
        )
        for name, values, colour in (
            ("Systolic", [v.systolic for v in facts.vitals], "#dc3545"),
            ("Diastolic", [v.diastolic for v in facts.vitals], "#0d6efd"),
            ("Heart rate", [v.heart_rate for v in facts.vitals], "#198754"),
        )
    ]
    traces.append(
        _trace(
            "scatter",
            panel=2,
            x=x,
            y=[v.spo2 for v in facts.vitals],
            name="SpO₂",
            mode="lines+markers",
            marker={"color": "#6f42c1"},
            hovertemplate="SpO₂ %{y}%<extra></extra>",
        )
    )
    # The alert limits as add_hline(row=..., annotation_position="top left") draws them.
    lines, labels = [], []
    if limits is not None:
        for value, label, colour, row in (
            (limits.systolic_above, f"systolic {limits.systolic_above}", "#dc3545", 1),
            (
                limits.pre_dose_systolic_above,
                f"pre-dose {limits.pre_dose_systolic_above}",
                "#fd7e14",
                1,
            ),
            (limits.diastolic_above, f"diastolic {limits.diastolic_above}", "#0d6efd", 1),
            (limits.spo2_below, f"SpO₂ {limits.spo2_below}%", "#6f42c1", 2),
        ):
            xref, yref = f"{_axis('x', row)} domain", _axis("y", row)
            lines.append(
                {
                    "type": "line",
                    "xref": xref,
                    "yref": yref,
                    "x0": 0,
                    "x1": 1,
                    "y0": value,
                    "y1": value,
                    "line": {"color": colour, "dash": "dash", "width": 1},
                }
            )
            labels.append(
                {
                    "xref": xref,
                    "yref": yref,
                    "x": 0,
                    "y": value,
                    "xanchor": "left",
                    "yanchor": "bottom",
                    "text": label,
                    "showarrow": False,
                }
            )
    grid["yaxis2"]["range"] = [85, 101]
    layout = _layout(height=480, annotations=[*grid.pop("annotations", []), *labels])
    if lines:
        layout["shapes"] = lines
    chart.figure = _figure(traces, layout, grid)
    return chart


SPAN_MARGIN = datetime.timedelta(days=3)
# After the last preparation, dosing or integration session: still the treatment period.
TREATMENT_TAIL = datetime.timedelta(days=7)


def shared_span(facts: DashboardFacts) -> dict | None:
    """One date range for the alliance and depression charts, so their dates line up: from the
    first session or rating to a week after the last session that is not a follow-up (the
    treatment period), and to the last date of all (with the follow-ups). None without dates."""
    codes = {"wai-sr", *(code for code, _, _ in DEPRESSION)}
    moments = [r.at for r in facts.responses if r.code in codes]
    moments += [s.at for s in facts.sessions]
    if not moments:
        return None
    start, end = min(moments) - SPAN_MARGIN, max(moments) + SPAN_MARGIN
    treatment = [s.at for s in facts.sessions if s.kind != SessionKind.FOLLOW_UP]
    treatment_end = min(max(treatment) + TREATMENT_TAIL, end) if treatment else end
    return {
        "treatment": [_iso(start), _iso(treatment_end)],
        "all": [_iso(start), _iso(end)],
        "has_follow_ups": treatment_end < end,
    }


def _show_span(chart: Chart, span: dict | None) -> Chart:
    """Open the chart on the treatment period; every x axis of its subplots alike."""
    if chart.figure is None or span is None:
        return chart
    layout = chart.figure["layout"]
    for name in [key for key in layout if key.startswith("xaxis")] or ["xaxis"]:
        layout.setdefault(name, {})["range"] = list(span["treatment"])
        layout[name]["autorange"] = False
    chart.span = span
    return chart


def dashboard_charts(facts: DashboardFacts) -> list[Chart]:
    span = shared_span(facts)
    return [
        _show_span(alliance_chart(facts), span),
        _show_span(outcomes_chart(facts), span),
        acute_chart(facts),
        vitals_chart(facts),
    ]


# --- program report and supervision (alliance.reports, alliance.supervision) ----------------

REPORT_FIGURES = (
    ("response", "Response", "#0d6efd"),
    ("remission", "Remission", "#198754"),
    ("improved", "Reliable improvement", "#6610f2"),
    ("deteriorated", "Reliable deterioration", "#dc3545"),
)


def report_charts(report) -> list[Chart]:
    """Per measure: each rate at every time point as a bar with its Wilson 95% interval."""
    from .reports import pct

    found = []
    for measure in report.measures:
        table = Table(
            caption=f"{measure.label}: rates with Wilson 95% intervals",
            headers=["Time point", "n", *(label for _, label, _ in REPORT_FIGURES)],
            rows=[
                [
                    row.time_point,
                    str(row.n),
                    *(pct(getattr(row, name)) for name, _, _ in REPORT_FIGURES),
                ]
                for row in measure.rows
            ],
        )
        chart = Chart(
            slug=f"report-{measure.code}",
            title=f"{measure.label}: rates by time point",
            description=(
                "Share of patients with a baseline and a score at each time point; the whiskers "
                "are Wilson 95% intervals. " + measure.rule
            ),
            figure=None,
            tables=[table],
            empty="No patient has a baseline and a later score yet.",
        )
        figure = go.Figure()
        x = [f"{row.time_point} (n = {row.n})" for row in measure.rows]
        drawn = False
        for name, label, colour in REPORT_FIGURES:
            rates = [getattr(row, name) for row in measure.rows]
            if all(rate is None for rate in rates):
                continue
            drawn = True
            shares = [None if r is None else 100 * r.share for r in rates]
            figure.add_trace(
                go.Bar(
                    x=x,
                    y=shares,
                    name=label,
                    marker={"color": colour},
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": [0 if r is None else 100 * (r.high - r.share) for r in rates],
                        "arrayminus": [0 if r is None else 100 * (r.share - r.low) for r in rates],
                    },
                    hovertemplate=f"{label} %{{y:.1f}}%<extra></extra>",
                )
            )
        if drawn and any(row.n for row in measure.rows):
            figure.update_layout(
                **_layout(
                    height=360,
                    barmode="group",
                    yaxis={"range": [0, 100], "title": "% of patients"},
                )
            )
            chart.figure = figure.to_plotly_json()
        found.append(chart)
    return found


def funnel_chart(page) -> Chart:
    """Each coach's mean bond against their number of ratings, with 95% and 99.8% control
    limits around the clinic mean (Spiegelhalter 2005): mean ± z·SD/√n."""
    table = Table(
        caption="Mean bond per coach and the control limits at their n",
        headers=["Coach", "Ratings", "Mean bond", "95% limits", "99.8% limits"],
    )
    chart = Chart(
        slug="funnel",
        title="Funnel plot: mean bond by number of ratings",
        description=(
            "Each point is a coach's mean WAI-SR bond (item mean) against the number of ratings "
            "behind it. The funnel shows how far from the clinic mean a mean of that size may "
            "fall by chance alone (95% and 99.8% limits). A point outside is worth a "
            "conversation, not a verdict; small n means wide limits."
        ),
        figure=None,
        tables=[table],
        empty="No ratings to plot yet.",
    )
    funnel = page.funnel
    if funnel is None or not funnel.points:
        return chart
    figure = go.Figure()
    for z, name, dash in ((1.96, "95% limits", "dash"), (3.09, "99.8% limits", "dot")):
        upper = [funnel.mean + z * funnel.sd / n**0.5 for n in funnel.curve_n]
        lower = [funnel.mean - z * funnel.sd / n**0.5 for n in funnel.curve_n]
        for values, side in ((upper, "upper"), (lower, "lower")):
            figure.add_trace(
                go.Scatter(
                    x=funnel.curve_n,
                    y=values,
                    mode="lines",
                    name=name,
                    showlegend=side == "upper",
                    legendgroup=name,
                    line={"color": "#6c757d", "dash": dash, "width": 1},
                    hoverinfo="skip",
                )
            )
    figure.add_trace(
        go.Scatter(
            x=[funnel.curve_n[0], funnel.curve_n[-1]],
            y=[funnel.mean, funnel.mean],
            mode="lines",
            name=f"Clinic mean {funnel.mean:.2f}",
            line={"color": "#212529", "width": 1.5},
        )
    )
    figure.add_trace(
        go.Scatter(
            x=[p.n for p in funnel.points],
            y=[p.mean for p in funnel.points],
            mode="markers+text",
            text=[p.label for p in funnel.points],
            textposition="top center",
            name="Coaches",
            marker={"size": 11, "color": "#d63384"},
            hovertemplate="%{text}: mean %{y:.2f} from %{x} ratings<extra></extra>",
        )
    )
    figure.update_layout(
        **_layout(
            height=420,
            xaxis={"title": "Ratings", "rangemode": "tozero"},
            yaxis={"title": "Mean bond (1-5)"},
        )
    )
    chart.figure = figure.to_plotly_json()
    for p in funnel.points:
        half95 = 1.96 * funnel.sd / p.n**0.5
        half998 = 3.09 * funnel.sd / p.n**0.5
        table.rows.append(
            [
                p.label,
                str(p.n),
                _num(p.mean),
                f"{_num(funnel.mean - half95)} to {_num(funnel.mean + half95)}",
                f"{_num(funnel.mean - half998)} to {_num(funnel.mean + half998)}",
            ]
        )
    return chart
