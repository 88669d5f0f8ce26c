"""Program outcome reports (METHODS §3): enrolment, questionnaire completion per time point,
and response, remission, reliable improvement and deterioration at 4 weeks, 3, 6 and 12
months with Wilson 95% intervals, and the mean change with its interval.

Response and remission come from each instrument's own definition (`outcome_definition`),
reliable change from its RCI (`outcomes.scoring.reliable_change`); nothing here writes a
clinical rule of its own. Pure functions over plain rows, plus `report_rows`, the one read.
No plotting here: the PDF is drawn in `report_pdf`, the page's chart in the view's template.
"""

import csv
import datetime
import io
from dataclasses import dataclass, field

import numpy as np
from django.utils import timezone

from clinic.access import patients_visible_to
from clinic.models import Enrolment, Program
from outcomes import scoring
from outcomes.models import Score
from outcomes.selectors import newest_definitions
from sessions.models import Attendance, Session, SessionKind

from . import analytics

# (code, short label): GRID-HAMD-17, QIDS-SR-16, PHQ-9
MEASURES = [(code, label.split(" (")[0]) for code, label in analytics.DEPRESSION_MEASURES]
TIME_POINTS = analytics.FOLLOW_UPS  # (key, label, days after the last dosing, half-width)
MIN_N = 5


def _nearest(rows, target: datetime.datetime, half_width: int):
    """The rating nearest the time point within its window (the earlier on a tie), or None."""
    window = datetime.timedelta(days=half_width)
    near = [r for r in rows if abs(r.at - target) <= window]
    return min(near, key=lambda r: (abs(r.at - target), r.at)) if near else None


def outcome_definitions(codes) -> dict[str, dict]:
    """The instrument definitions whose rules decide response, remission and reliable change:
    each instrument's newest loaded version, as the dashboard reads them (PHQ-9 version 2
    brings its response rule, and judges version-1 answers by it too). One query."""
    return newest_definitions(codes)


@dataclass(frozen=True)
class Rate:
    count: int
    n: int
    low: float
    high: float

    @property
    def share(self) -> float:
        return self.count / self.n

    @property
    def text(self) -> str:
        return pct(self)


def wilson(count: int, n: int) -> Rate | None:
    """count of n with its Wilson 95% interval; None when n is 0."""
    if n == 0:
        return None
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(count, n, alpha=0.05, method="wilson")
    return Rate(count, n, float(low), float(high))


@dataclass(frozen=True)
class MeanChange:
    n: int
    mean: float
    low: float | None
    high: float | None


def mean_change(changes: list[float]) -> MeanChange | None:
    """Mean of (time point - baseline) with its t-based 95% interval (scipy)."""
    if not changes:
        return None
    x = np.asarray(changes, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0:
        return MeanChange(len(x), float(x.mean()), None, None)
    from scipy import stats

    interval = stats.ttest_1samp(x, 0.0).confidence_interval(0.95)
    return MeanChange(len(x), float(x.mean()), float(interval.low), float(interval.high))


@dataclass
class OutcomeRow:
    time_point: str
    n: int  # patients with a baseline and a score at this time point
    missing: int  # dosed patients with a baseline but no score here (intention to treat)
    response: Rate | None
    remission: Rate | None
    improved: Rate | None
    deteriorated: Rate | None
    change: MeanChange | None

    @property
    def enough(self) -> bool:
        return self.n >= MIN_N


@dataclass
class MeasureOutcomes:
    code: str
    label: str
    with_baseline: int
    rule: str  # the instrument's own words for response and remission, or why there are none
    rci: str
    rows: list[OutcomeRow]


@dataclass
class Completion:
    time_point: str
    due: int
    answered: int
    rate: Rate | None


@dataclass
class ProgramReport:
    title: str
    filters: str
    enrolled: int
    completed: int
    withdrawn: int
    dosed: int
    completion: list[Completion]
    measures: list[MeasureOutcomes]
    generated_at: datetime.datetime = field(default_factory=timezone.now)


@dataclass(frozen=True)
class TotalRow:
    patient_id: int
    code: str
    value: float
    at: datetime.datetime


def depression_totals(*, patient_ids) -> list[TotalRow]:
    """Every depression measure's total for these patients, one query."""
    return [
        TotalRow(pid, code, value, at)
        for pid, code, value, at in Score.objects.filter(
            response__patient_id__in=patient_ids,
            response__version__instrument__code__in=[code for code, _ in MEASURES],
            scale="total",
            value__isnull=False,
        ).values_list(
            "response__patient_id",
            "response__version__instrument__code",
            "value",
            "response__administered_at",
        )
    ]


def _rule_words(definition: dict) -> str:
    spec = definition.get("special", {}).get("treatment_outcome")
    if spec is None:
        return (
            f"{definition['name']} version {definition['version']} defines no response or "
            "remission rule, so none is reported."
        )
    return (
        f"Response: a drop of at least {spec['response_min_drop'] * 100:g}% from baseline; "
        f"remission: {spec['remission_max']:g} or less. {spec.get('source', '')}".strip()
    )


def _rci_words(definition: dict) -> str:
    if definition.get("rci") is None:
        return "No reliable change index in the instrument definition: not reported."
    return (
        f"Reliable change: at least {definition['rci']:g} points "
        f"({definition.get('rci_source', 'source not given')})"
    )


def measure_outcomes(
    code: str,
    label: str,
    definition: dict,
    dosings: dict[int, tuple[datetime.datetime, datetime.datetime]],
    totals: list[TotalRow],
) -> MeasureOutcomes:
    """`dosings`: {patient id: (first dosing, last dosing)}. Baseline is the last score
    before the first dosing; each time point the score nearest its target within the window
    after the last dosing (as in cohort analytics)."""
    by_patient: dict[int, list[TotalRow]] = {}
    for row in sorted(totals, key=lambda r: (r.at, r.value)):
        if row.code == code:
            by_patient.setdefault(row.patient_id, []).append(row)
    has_rule = definition.get("special", {}).get("treatment_outcome") is not None
    has_rci = definition.get("rci") is not None
    baselines = {}
    for patient_id, (first, _) in dosings.items():
        before = [r for r in by_patient.get(patient_id, []) if r.at < first]
        if before:
            baselines[patient_id] = before[-1].value
    rows = []
    for _key, point_label, days, half_width in TIME_POINTS:
        counts = {"response": 0, "remission": 0, "improved": 0, "deteriorated": 0}
        changes = []
        for patient_id, baseline in sorted(baselines.items()):
            last = dosings[patient_id][1]
            after = [r for r in by_patient.get(patient_id, []) if r.at > last]
            hit = _nearest(after, last + datetime.timedelta(days=days), half_width)
            if hit is None:
                continue
            changes.append(hit.value - baseline)
            if has_rule:
                status = scoring.treatment_outcome(definition, baseline, hit.value)
                counts["response"] += bool(status["response"])
                counts["remission"] += bool(status["remission"])
            if has_rci:
                change = scoring.reliable_change(definition, baseline, hit.value)
                counts["improved"] += change == "improved"
                counts["deteriorated"] += change == "deteriorated"
        n = len(changes)
        rows.append(
            OutcomeRow(
                time_point=point_label,
                n=n,
                missing=len(baselines) - n,
                response=wilson(counts["response"], n) if has_rule else None,
                remission=wilson(counts["remission"], n) if has_rule else None,
                improved=wilson(counts["improved"], n) if has_rci else None,
                deteriorated=wilson(counts["deteriorated"], n) if has_rci else None,
                change=mean_change(changes),
            )
        )
    return MeasureOutcomes(
        code=code,
        label=label,
        with_baseline=len(baselines),
        rule=_rule_words(definition),
        rci=_rci_words(definition),
        rows=rows,
    )


def completion(
    dosings: dict[int, tuple[datetime.datetime, datetime.datetime]],
    totals: list[TotalRow],
    now: datetime.datetime,
) -> list[Completion]:
    """Per time point: patients for whom it is due (its window has closed) and those who
    answered any depression measure within it; baseline is due for every dosed patient."""
    by_patient: dict[int, list[TotalRow]] = {}
    for row in totals:
        by_patient.setdefault(row.patient_id, []).append(row)
    answered = sum(
        1
        for pid, (first, _) in dosings.items()
        if any(r.at < first for r in by_patient.get(pid, []))
    )
    found = [Completion("Baseline", len(dosings), answered, wilson(answered, len(dosings)))]
    for _key, label, days, half_width in TIME_POINTS:
        due = done = 0
        for pid, (_first, last) in dosings.items():
            target = last + datetime.timedelta(days=days)
            if target + datetime.timedelta(days=half_width) > now:
                continue
            due += 1
            window = datetime.timedelta(days=half_width)
            done += any(abs(r.at - target) <= window for r in by_patient.get(pid, []))
        found.append(Completion(label, due, done, wilson(done, due)))
    return found


def report_rows(
    *,
    user,
    program: Program | None = None,
    modality: str = "",
    start: datetime.date | None = None,
    end: datetime.date | None = None,
):
    """Enrolments started in the range, their completed attended dosings, and every
    depression total of those patients: three queries."""
    enrolments = Enrolment.objects.filter(patient__in=patients_visible_to(user))
    if program is not None:
        enrolments = enrolments.filter(program=program)
    if modality:
        enrolments = enrolments.filter(program__modality=modality)
    if start is not None:
        enrolments = enrolments.filter(start_date__gte=start)
    if end is not None:
        enrolments = enrolments.filter(start_date__lte=end)
    statuses = list(enrolments.values_list("patient_id", "status"))
    dosings: dict[int, tuple[datetime.datetime, datetime.datetime]] = {}
    for patient_id, at in (
        Attendance.objects.filter(
            enrolment__in=enrolments,
            session__kind=SessionKind.DOSING,
            session__status=Session.Status.COMPLETED,
        )
        .exclude(status__in=Attendance.NOT_COMING)
        .values_list("patient_id", "session__scheduled_start")
        .order_by("session__scheduled_start")
    ):
        first, _ = dosings.get(patient_id, (at, at))
        dosings[patient_id] = (first, at)
    totals = depression_totals(patient_ids=list(dosings))
    return statuses, dosings, totals


def build_report(
    *, title: str, filters: str, statuses, dosings, totals, definitions: dict[str, dict], now
) -> ProgramReport:
    return ProgramReport(
        title=title,
        filters=filters,
        enrolled=len(statuses),
        completed=sum(status == Enrolment.Status.COMPLETED for _, status in statuses),
        withdrawn=sum(status == Enrolment.Status.WITHDRAWN for _, status in statuses),
        dosed=len(dosings),
        completion=completion(dosings, totals, now),
        measures=[
            measure_outcomes(code, label, definitions[code], dosings, totals)
            for code, label in MEASURES
            if any(t.code == code for t in totals)
        ],
        generated_at=now,
    )


def program_report(
    *,
    user,
    program: Program | None = None,
    modality: str = "",
    start: datetime.date | None = None,
    end: datetime.date | None = None,
) -> ProgramReport:
    statuses, dosings, totals = report_rows(
        user=user, program=program, modality=modality, start=start, end=end
    )
    parts = [program.name if program else "All programs"]
    if modality:
        parts.append(dict(Program.Modality.choices)[modality])
    if start or end:
        parts.append(
            f"enrolled {start.isoformat() if start else 'any time'} to "
            f"{end.isoformat() if end else 'today'}"
        )
    return build_report(
        title="Program outcome report",
        filters=" · ".join(parts),
        statuses=statuses,
        dosings=dosings,
        totals=totals,
        definitions=outcome_definitions([code for code, _ in MEASURES]),
        now=timezone.now(),
    )


def pct(rate: Rate | None) -> str:
    """ "3/8 = 37.5% (95% CI 13.7 to 69.4)"; "—" when there is no denominator."""
    if rate is None:
        return "—"
    return (
        f"{rate.count}/{rate.n} = {100 * rate.share:.1f}% "
        f"(95% CI {100 * rate.low:.1f} to {100 * rate.high:.1f})"
    )


def change_text(change: MeanChange | None) -> str:
    if change is None:
        return "—"
    if change.low is None:
        return f"{change.mean:+.1f} (n = {change.n}; no interval)"
    return f"{change.mean:+.1f} (95% CI {change.low:+.1f} to {change.high:+.1f})"


def report_csv(report: ProgramReport) -> str:
    """One row per figure: what it is, count, denominator, rate and its interval."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["section", "measure", "time_point", "figure", "count", "n", "value", "ci_low", "ci_high"]
    )
    writer.writerow(["enrolment", "", "", "enrolled", report.enrolled, "", "", "", ""])
    writer.writerow(["enrolment", "", "", "completed", report.completed, "", "", "", ""])
    writer.writerow(["enrolment", "", "", "withdrawn", report.withdrawn, "", "", "", ""])
    writer.writerow(["enrolment", "", "", "dosed", report.dosed, "", "", "", ""])
    for row in report.completion:
        writer.writerow(
            _rate_row(
                "completion",
                "any depression measure",
                row.time_point,
                "answered",
                row.rate,
                row.answered,
                row.due,
            )
        )
    for measure in report.measures:
        for row in measure.rows:
            for name in ("response", "remission", "improved", "deteriorated"):
                rate = getattr(row, name)
                figure = {
                    "improved": "reliable improvement",
                    "deteriorated": "reliable deterioration",
                }.get(name, name)
                writer.writerow(
                    _rate_row("outcome", measure.label, row.time_point, figure, rate, None, row.n)
                )
            change = row.change
            writer.writerow(
                [
                    "outcome",
                    measure.label,
                    row.time_point,
                    "mean change from baseline",
                    "",
                    row.n,
                    "" if change is None else f"{change.mean:.3f}",
                    "" if change is None or change.low is None else f"{change.low:.3f}",
                    "" if change is None or change.high is None else f"{change.high:.3f}",
                ]
            )
    return out.getvalue()


def _rate_row(section, measure, time_point, figure, rate, count, n):
    if rate is None:
        return [section, measure, time_point, figure, "" if count is None else count, n, "", "", ""]
    return [
        section,
        measure,
        time_point,
        figure,
        rate.count,
        rate.n,
        f"{rate.share:.4f}",
        f"{rate.low:.4f}",
        f"{rate.high:.4f}",
    ]
