"""Everything the patient dashboard draws, in a fixed number of queries (Plotly lives here
and in charts.py only, so the worker never imports it)."""

from django.urls import reverse
from django.utils import timezone

from clinic.models import Patient
from outcomes.models import Response
from outcomes.selectors import newest_definitions
from sessions.models import Attendance, Session, SessionKind

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
    return charts.DashboardFacts(
        responses=rows,
        sessions=sessions,
        flags=flags,
        bond_threshold=rule.weak_bond_below,
        definitions=newest_definitions(charts.CHARTED),
        bands=bond_bands(patient=patient, rule=rule),
        band_min_patients=rule.band_min_patients,
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


def upcoming_dosings(facts: charts.DashboardFacts) -> list[charts.SessionMark]:
    return [s for s in facts.sessions if s.kind == SessionKind.DOSING and s.upcoming]
