"""The dashboard's figures and tables, from plain rows (no database)."""

import dataclasses
import datetime
import json

import plotly.graph_objects as go

from alliance import charts
from outcomes.scoring import get_definition
from sessions import monitoring

DAY = datetime.datetime(2026, 3, 2, 10, 0)


def _at(days: float) -> datetime.datetime:
    return DAY + datetime.timedelta(days=days)


def _wai(days, *, bond, total=4.0, session_id=None, label="Preparation 1"):
    return charts.ResponseRow(
        response_id=int(days * 10),
        at=_at(days),
        code="wai-sr",
        definition=get_definition("wai-sr"),
        scores={
            "total": (total * 12, total, ""),
            "bond": (bond * 4, bond, ""),
            "goal": (16.0, 4.0, ""),
            "task": (16.0, 4.0, ""),
        },
        extras={},
        session_id=session_id,
        session_label=label,
    )


def _total(code, days, value, band=""):
    return charts.ResponseRow(
        response_id=int(days * 100) + len(code),
        at=_at(days),
        code=code,
        definition=get_definition(code),
        scores={"total": (value, None, band)},
        extras={},
        session_id=None,
        session_label="",
    )


def _acute(code, days, means: dict, *, session_id=None, extras=None):
    return charts.ResponseRow(
        response_id=int(days * 1000) + len(code),
        at=_at(days),
        code=code,
        definition=get_definition(code),
        scores={scale: (None, mean, "") for scale, mean in means.items()},
        extras=extras or {},
        session_id=session_id,
        session_label="",
    )


def _facts(responses=(), sessions=(), flags=(), threshold=3.5):
    return charts.DashboardFacts(
        responses=list(responses),
        sessions=list(sessions),
        flags=list(flags),
        bond_threshold=threshold,
        definitions={code: get_definition(code) for code in charts.CHARTED},
    )


DOSING = charts.SessionMark(session_id=9, at=_at(20), kind="dosing", label="Dosing 1", status="")


def _plain(chart):
    """The figure as the browser receives it (tuples become lists)."""
    return json.loads(json.dumps(chart.figure))


def _trace(figure, name):
    return next(t for t in figure["data"] if t.get("name") == name)


def test_alliance_chart_draws_each_scale_the_threshold_band_and_the_dosing_day():
    facts = _facts(
        [_wai(0, bond=3.0), _wai(7, bond=3.75)],
        sessions=[
            charts.SessionMark(1, _at(0), "preparation", "Preparation 1", "completed"),
            DOSING,
        ],
        threshold=3.25,
    )
    chart = charts.alliance_chart(facts)
    figure = _plain(chart)
    assert _trace(figure, "Bond")["y"] == [3.0, 3.75]
    assert _trace(figure, "Total")["x"] == ["2026-03-02 10:00", "2026-03-09 10:00"]
    band = figure["layout"]["shapes"][0]
    assert (band["type"], band["y0"], band["y1"]) == ("rect", 1, 3.25)
    dosing_lines = [s for s in figure["layout"]["shapes"] if s["type"] == "line"]
    assert [line["x0"] for line in dosing_lines] == ["2026-03-22 10:00"]
    assert _trace(figure, "Dosing sessions")["marker"]["symbol"] == "diamond"
    assert _trace(figure, "Preparation sessions")["marker"]["symbol"] == "circle"
    ratings = chart.tables[0]
    assert ratings.headers == [
        "Date",
        "Session",
        "Total (mean)",
        "Bond (mean)",
        "Goal (mean)",
        "Task (mean)",
    ]
    assert ratings.rows[0] == ["2 Mar 2026", "Preparation 1", "4", "3", "4", "4"]
    assert ratings.rows[1][3] == "3.75"


def test_open_and_past_flags_sit_on_the_same_time_axis_and_in_their_table():
    flags = [
        charts.FlagMark(_at(7), "Weak bond before dosing", "High", "Open", True, "Bond 3", "/f/1"),
        charts.FlagMark(_at(2), "Low alliance", "Low", "Resolved", False, "SRS 30", "/f/2"),
    ]
    chart = charts.alliance_chart(_facts([_wai(0, bond=3.0)], flags=flags))
    assert _trace(_plain(chart), "Open flags")["x"] == ["2026-03-09 10:00"]
    assert _trace(_plain(chart), "Past flags")["x"] == ["2026-03-04 10:00"]
    table = chart.tables[1]
    assert [row[1] for row in table.rows] == ["Weak bond before dosing", "Low alliance"]


def test_no_ratings_gives_no_figure_but_says_what_to_do():
    chart = charts.alliance_chart(_facts())
    assert chart.figure is None
    assert "No WAI-SR ratings yet" in chart.empty
    assert chart.tables[0].rows == []


def test_depression_shows_bands_and_marks_response_and_remission_against_baseline():
    rows = [
        _total("phq-9", 0, 20, "Severe"),
        _total("phq-9", 30, 9, "Mild"),  # 55% drop: response, not remission
        _total("phq-9", 90, 4, "Minimal"),  # response and remission (below 5)
        _total("qids-sr-16", 0, 16, "Severe"),
        _total("qids-sr-16", 30, 12, "Moderate"),  # 25% drop: neither
    ]
    chart = charts.outcomes_chart(_facts(rows))
    figure = _plain(chart)
    bands = [s for s in figure["layout"]["shapes"] if s["type"] == "rect"]
    assert len(bands) == 5 + 5  # PHQ-9 and QIDS-SR-16 each have five bands
    # Every band is labelled with its name, inside its own plot and at its own height.
    labels = {
        (note["yref"], note["text"]): note["y"]
        for note in figure["layout"]["annotations"]
        if note.get("xanchor") == "right"
    }
    assert labels[("y", "Moderately severe")] == 17  # PHQ-9 15-19
    assert ("y2", "Severe") in labels and ("y", "Minimal") in labels
    assert len(labels) == 10
    responses = [t for t in figure["data"] if t["name"] == "Response"]
    remissions = [t for t in figure["data"] if t["name"] == "Remission"]
    assert [t["y"] for t in responses] == [[9, 4]]
    assert [t["y"] for t in remissions] == [[4]]
    outcome = {(row[1], row[0]): row[5] for row in chart.tables[0].rows}
    assert outcome[("PHQ-9", "1 Apr 2026")] == "response"
    assert outcome[("PHQ-9", "31 May 2026")] == "response, remission"
    assert outcome[("QIDS-SR-16", "1 Apr 2026")] == "—"
    changes = [row[4] for row in chart.tables[0].rows]
    assert changes[:3] == ["baseline", "-55%", "-80%"]
    assert any("PHQ-9" in note and "below 5" in note for note in chart.notes)


def test_a_phq9_answered_under_version_1_is_judged_by_the_rule_version_2_added():
    first = get_definition("phq-9", "1")
    rows = [
        charts.ResponseRow(
            days, _at(days), "phq-9", first, {"total": (value, None, "")}, {}, None, ""
        )
        for days, value in ((0, 20), (30, 4))
    ]
    chart = charts.outcomes_chart(_facts(rows))
    assert [row[5] for row in chart.tables[0].rows] == ["—", "response, remission"]


def test_the_depression_table_shows_sums_whole_and_marks_a_prorated_one():
    phq = get_definition("phq-9")
    rows = [
        # a PHQ-9 of 16 has the item mean 1.78: the table shows the sum, labelled
        charts.ResponseRow(
            1, _at(0), "phq-9", phq, {"total": (16.0, 1.78, "Mod. severe")}, {}, None, ""
        ),
        # (value, mean, band, prorated): 11/7 x 9 = 14.14 stored as 14
        charts.ResponseRow(
            2, _at(7), "phq-9", phq, {"total": (14.0, 1.57, "Moderate", True)}, {}, None, ""
        ),
    ]
    table = charts.outcomes_chart(_facts(rows)).tables[0]
    assert table.headers[2] == "Score"
    assert [row[2] for row in table.rows] == ["16 sum", "14 sum, prorated"]
    assert "1.78" not in str(table.rows)


def test_acute_experience_groups_each_dosing_and_draws_the_60_percent_line():
    meq = {"mystical": 3.5, "positive_mood": 4.0, "transcendence": 2.5, "ineffability": 3.0}
    rows = [
        _acute(
            "meq-30",
            21,
            meq,
            session_id=DOSING.session_id,
            extras={"complete_mystical_experience": False},
        ),
        _acute("piq", 21, {"avoidance_maladaptive": 2.5, "goals_adaptive": 3.0}),
        _acute("ebi", 21, {"total": 62.5}),
    ]
    chart = charts.acute_chart(_facts(rows, sessions=[DOSING]))
    figure = _plain(chart)
    assert _trace(figure, "Mystical")["y"] == [70.0]
    assert _trace(figure, "Transcendence of time and space")["y"] == [50.0]
    assert _trace(figure, "EBI")["y"] == [62.5]
    line = next(s for s in figure["layout"]["shapes"] if s["type"] == "line")
    assert (line["y0"], line["y1"]) == (60, 60)
    [row] = chart.tables[0].rows
    assert row[0] == "D1: Dosing 1, 22 Mar 2026"
    assert _trace(figure, "EBI")["x"] == ["D1"]
    assert row[1:6] == ["70", "80", "50", "60", "no"]
    assert row[-1] == "62.5"


def _reading(day, systolic, alerts=()):
    return charts.VitalsRow(
        at=DOSING.at + datetime.timedelta(minutes=day),
        session_label="Dosing 1",
        point="+40 min",
        systolic=systolic,
        diastolic=85,
        heart_rate=80,
        spo2=97,
        alerts=list(alerts),
    )


def test_the_vitals_chart_draws_the_limits_and_lists_readings_and_events():
    facts = dataclasses.replace(
        _facts([], sessions=[DOSING]),
        vitals=[
            _reading(0, 150, ["Blood pressure 150/85 mmHg is above 140/90"]),
            _reading(40, 130),
        ],
        adverse_events=[
            charts.EventRow(
                onset=DOSING.at,
                session_label="Dosing 1",
                description="Nausea",
                grade="Mild",
                serious="No",
                relatedness="Probable",
                outcome="Recovered",
            )
        ],
        vital_limits=monitoring.DEFAULT_LIMITS["ketamine"],
    )
    chart = charts.vitals_chart(facts)
    assert _trace(chart.figure, "Systolic")["y"] == [150, 130]
    lines = sorted(s["y0"] for s in chart.figure["layout"]["shapes"])
    assert lines == [92, 110, 140, 180]
    readings, events = chart.tables
    assert readings.rows[0][3] == "150/85" and "above 140/90" in readings.rows[0][-1]
    assert events.rows[0][2] == "Nausea"
    assert "before the dose above 140/90 mmHg" in chart.notes[0]


def test_without_readings_the_vitals_chart_says_so_and_still_lists_events():
    chart = charts.vitals_chart(_facts([], sessions=[DOSING]))
    assert chart.figure is None and "No vital signs recorded yet" in chart.empty


def test_every_figure_is_plain_json():
    facts = _facts(
        [_wai(0, bond=3.0), _total("phq-9", 0, 12), _acute("ebi", 21, {"total": 50})],
        sessions=[DOSING],
    )
    facts = dataclasses.replace(
        facts, vitals=[_reading(0, 128)], vital_limits=monitoring.DEFAULT_LIMITS["ketamine"]
    )
    for chart in charts.dashboard_charts(facts):
        assert json.loads(json.dumps(chart.figure))["data"]


def _band(days, *, default=False):
    return charts.BandMark(
        at=_at(days),
        label=f"Preparation {days}",
        n=3 if default else 40,
        p10=3.5 if default else 3.1,
        p25=None if default else 3.4,
        p50=None if default else 3.9,
        is_default=default,
        patient_bond=3.25,
        percentile_rank=None if default else 30.0,
    )


def test_every_dashboard_figure_is_what_plotly_makes_of_it():
    """The figures are written as plain JSON, without plotly's validation, for speed
    (charts._figure): validating each finished figure with plotly must change nothing, or
    the browser would draw something else. Every kind of trace, band and line is present."""
    rows = [
        _wai(0, bond=3.0),
        _wai(7, bond=3.75),
        _total("phq-9", 0, 20, "Severe"),
        _total("phq-9", 30, 9, "Mild"),
        _total("qids-sr-16", 0, 16, "Severe"),
        _total("grid-hamd-17", 0, 18, "Moderate"),
        _acute("meq-30", 21, {"mystical": 3.5}, session_id=DOSING.session_id),
        _acute("piq", 21, {"total": 3.0}),
        _acute("ebi", 21, {"total": 62.5}),
    ]
    sessions = [_session(1, 0, "preparation"), DOSING, _session(3, 100, "follow_up")]
    flags = [
        charts.FlagMark(_at(7), "Weak bond before dosing", "High", "Open", True, "Bond 3", "/f/1"),
        charts.FlagMark(_at(2), "Low alliance", "Low", "Resolved", False, "SRS 30", "/f/2"),
    ]
    facts = dataclasses.replace(
        _facts(rows, sessions=sessions, flags=flags),
        bands=[_band(0), _band(7), _band(14, default=True)],
        vitals=[_reading(0, 128), _reading(40, 150, ["systolic above 140"])],
        vital_limits=monitoring.DEFAULT_LIMITS["ketamine"],
    )
    drawn = charts.dashboard_charts(facts)
    assert [chart.slug for chart in drawn if chart.figure] == [
        "alliance",
        "outcomes",
        "acute",
        "vitals",
    ]
    for chart in drawn:
        figure = _plain(chart)
        assert figure["layout"]["shapes"] and figure["layout"]["annotations"]
        revalidated = go.Figure(figure).to_plotly_json()
        assert json.loads(json.dumps(revalidated)) == figure, chart.slug


def test_vitals_without_limits_are_still_what_plotly_makes_of_them():
    facts = dataclasses.replace(_facts(), vitals=[_reading(0, 128)])
    figure = _plain(charts.vitals_chart(facts))
    assert "shapes" not in figure["layout"]
    assert json.loads(json.dumps(go.Figure(figure).to_plotly_json())) == figure


def test_figures_do_not_share_what_the_page_changes():
    """The layouts laid out once per arrangement are copied per figure: opening one chart on
    its treatment period must not move another's axes."""
    first = charts.outcomes_chart(_facts([_total("phq-9", 0, 20, "Severe")]))
    first.figure["layout"]["xaxis"]["range"] = ["2000-01-01 00:00", "2000-02-01 00:00"]
    second = charts.outcomes_chart(_facts([_total("phq-9", 0, 20, "Severe")]))
    assert "range" not in second.figure["layout"]["xaxis"]


# --- the shared date range ------------------------------------------------------------------


def _session(session_id, days, kind):
    return charts.SessionMark(session_id=session_id, at=_at(days), kind=kind, label="", status="")


def test_alliance_and_depression_open_on_the_same_treatment_period():
    sessions = [
        _session(1, 0, "preparation"),
        _session(2, 10, "dosing"),
        _session(3, 12, "integration"),
        _session(4, 100, "follow_up"),
    ]
    responses = [_wai(1, bond=3.0), _total("phq-9", -5, 18, "Moderately severe")]
    responses += [_total("phq-9", 104, 6, "Mild")]
    alliance, depression, *_ = charts.dashboard_charts(_facts(responses, sessions))
    treatment = ["2026-02-22 10:00", "2026-03-21 10:00"]  # 3 days before the first PHQ-9 to
    assert alliance.span["treatment"] == treatment  # a week after the integration session
    assert alliance.span["all"] == ["2026-02-22 10:00", "2026-06-17 10:00"]
    assert alliance.span["has_follow_ups"] and depression.span == alliance.span
    for chart in (alliance, depression):
        layout = _plain(chart)["layout"]
        axes = [value for key, value in layout.items() if key.startswith("xaxis")]
        assert axes and all(axis["range"] == treatment for axis in axes)


def test_without_follow_ups_the_treatment_period_is_everything():
    sessions = [_session(1, 0, "preparation"), _session(2, 10, "dosing")]
    span = charts.shared_span(_facts([_wai(1, bond=3.0)], sessions))
    assert span["treatment"] == span["all"] and not span["has_follow_ups"]
    assert charts.shared_span(_facts()) is None
