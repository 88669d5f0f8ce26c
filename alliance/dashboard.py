"""Everything the patient dashboard draws, in a fixed number of queries (Plotly lives here
and in charts.py only, so the worker never imports it)."""

from django.urls import reverse
from django.utils import timezone

from clinic.models import Patient
from outcomes.models import Response
from outcomes.selectors import newest_definitions
from sessions import selectors as session_selectors
from sessions.models import AdverseEvent, Attendance, Session, SessionKind, VitalSigns

from . import charts, trajectories
from .flag_inputs import rule_or_default, session_label
from .models import Flag
from .selectors import flag_summary


def dashboard_facts(*, patient: Patient) -> charts.DashboardFacts:
    """Everything the patient dashboard draws, in a fixed number of queries."""
    now = timezone.now()
    responses = (
        Response.objects.filter(patient=patient)
        .select_related("version__instrument", "session")
        .prefetch_related("scores")
        .order_by("administered_at", "id")
    )
    rows = [
        charts.ResponseRow(
            response_id=response.pk,
            at=timezone.localtime(response.administered_at),
            code=response.version.instrument.code,
            definition=response.version.definition,
            scores={s.scale: (s.value, s.mean, s.band, s.prorated) for s in response.scores.all()},
            extras=response.extras,
            session_id=response.session_id,
            session_label=session_label(response.session),
        )
        for response in responses
    ]
    # Per attendance, not per session: a cancelled place in a group circle hides only this
    # patient's mark, not the circle for everyone.
    attendances = (
        Attendance.objects.filter(patient=patient)
        .exclude(status=Attendance.Status.CANCELLED)
        .exclude(session__status=Session.Status.CANCELLED)
        .select_related("session")
        .order_by("session__scheduled_start")
    )
    sessions = [
        charts.SessionMark(
            session_id=a.session_id,
            at=timezone.localtime(a.session.scheduled_start),
            kind=a.session.kind,
            label=session_label(a.session),
            status=a.session.get_status_display().lower(),
            upcoming=a.session.status == Session.Status.SCHEDULED
            and a.session.scheduled_start >= now,
        )
        for a in attendances
    ]
    flags = [
        charts.FlagMark(
            at=timezone.localtime(flag.raised_at),
            kind=flag.get_kind_display(),
            severity=flag.get_severity_display(),
            status=flag.get_status_display(),
            is_open=flag.is_unresolved,
            summary=flag_summary(flag),
            url=reverse("flag_detail", args=[flag.public_id]),
        )
        for flag in Flag.objects.filter(patient=patient).order_by("raised_at", "id")
    ]
    rule = rule_or_default(patient=patient)
    vitals, limits = _vitals(patient)
    return charts.DashboardFacts(
        responses=rows,
        sessions=sessions,
        flags=flags,
        bond_threshold=rule.weak_bond_below,
        definitions=newest_definitions(charts.CHARTED),
        bands=bond_bands(patient=patient, rule=rule),
        band_min_patients=rule.band_min_patients,
        vitals=vitals,
        adverse_events=[
            charts.EventRow(
                onset=timezone.localtime(e.onset_at),
                session_label=session_label(e.session),
                description=e.description,
                grade=e.get_grade_display(),
                serious=("Yes: " + ", ".join(e.criteria_display())) if e.serious else "No",
                relatedness=e.get_relatedness_display(),
                outcome=e.get_outcome_display()
                + (f", {e.resolved_on:%-d %b %Y}" if e.resolved_on else ""),
            )
            for e in AdverseEvent.objects.filter(patient=patient)
            .select_related("session")
            .order_by("onset_at", "id")
        ],
        vital_limits=limits,
    )


def bond_bands(*, patient, rule) -> list[charts.BandMark]:
    """The expected bond at each of the patient's protocol steps where WAI-SR is due."""
    return [
        charts.BandMark(
            at=timezone.localtime(step.session_at),
            label=step.label,
            n=step.band.n,
            p10=step.band.p10,
            p25=step.band.p25,
            p50=step.band.p50,
            is_default=step.band.is_default,
            patient_bond=step.bond,
            percentile_rank=step.percentile_rank,
        )
        for step in trajectories.patient_steps(patient=patient, min_n=rule.band_min_patients)
    ]


def _vitals(patient: Patient) -> tuple[list[charts.VitalsRow], object]:
    """Every reading with its alerts in words, and the latest dosing's program limits; a
    fixed number of queries (limits once per program)."""
    readings = list(
        VitalSigns.objects.filter(patient=patient)
        .select_related("session__program", "session__protocol_step")
        .order_by("measured_at", "id")
    )
    limits_of: dict[int, object] = {}
    rows = []
    for v in readings:
        session = v.session
        if session.program_id not in limits_of:
            limits_of[session.program_id] = session_selectors.limits_for(session.program)
        schedule = session_selectors.dosing_schedule(session)
        point = schedule.point(v.point)
        rows.append(
            charts.VitalsRow(
                at=timezone.localtime(v.measured_at),
                session_label=session_label(session),
                point=point.label if point else "",
                systolic=v.systolic,
                diastolic=v.diastolic,
                heart_rate=v.heart_rate,
                spo2=v.spo2,
                alerts=session_selectors.vitals_alerts(
                    v, session, schedule, limits_of[session.program_id]
                ),
            )
        )
    latest = limits_of.get(readings[-1].session.program_id) if readings else None
    return rows, latest


def upcoming_dosings(facts: charts.DashboardFacts) -> list[charts.SessionMark]:
    return [s for s in facts.sessions if s.kind == SessionKind.DOSING and s.upcoming]
