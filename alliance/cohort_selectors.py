"""The rows cohort analytics computes over."""

import datetime

from clinic.access import patients_visible_to
from clinic.models import Program
from outcomes.models import InstrumentVersion, Respondent, Score
from sessions.models import Attendance, Session, SessionKind

from . import analytics
from .exports import pseudonym_of


def cohort_rows(
    *,
    user,
    depression: str,
    program: Program | None = None,
    modality: str = "",
    start: datetime.date | None = None,
    end: datetime.date | None = None,
) -> tuple[list[analytics.DosingRow], list[analytics.ScoreRow]]:
    """Completed dosings attended in the chosen program, modality and dates, and the scores
    the analytics need for those patients: three queries, whatever the size of the cohort.

    Item means are recomputed exactly from the answers (`analytics.exact_mean`): the stored
    `Score.mean` is rounded to 2 decimals for display."""
    attended = Attendance.objects.filter(
        patient__in=patients_visible_to(user),
        session__kind=SessionKind.DOSING,
        session__status=Session.Status.COMPLETED,
    ).exclude(status__in=[Attendance.Status.ABSENT, Attendance.Status.CANCELLED])
    if program is not None:
        attended = attended.filter(session__program=program)
    if modality:
        attended = attended.filter(session__program__modality=modality)
    if start is not None:
        attended = attended.filter(session__scheduled_start__date__gte=start)
    if end is not None:
        attended = attended.filter(session__scheduled_start__date__lte=end)
    dosings = [
        analytics.DosingRow(patient_id=pid, pseudonym=pseudonym_of(public_id), at=at)
        for pid, public_id, at in attended.values_list(
            "patient_id", "patient__public_id", "session__scheduled_start"
        )
    ]
    rows = list(
        Score.objects.filter(
            response__patient__in=attended.values("patient_id"),
            response__version__instrument__code__in=[*analytics.INSTRUMENTS, depression],
            scale__in=[scale for scale, _ in analytics.ALLIANCE_SCALES],
        ).values_list(
            "response__patient_id",
            "response__version__instrument__code",
            "scale",
            "value",
            "mean",
            "response__administered_at",
            "response_id",
            "response__session__scheduled_start",
            "response__respondent",
            "response__version_id",
            "response__answers",
        )
    )
    definitions = dict(
        InstrumentVersion.objects.filter(pk__in={row[9] for row in rows}).values_list(
            "pk", "definition"
        )
    )
    scores = [
        analytics.ScoreRow(
            patient_id=pid,
            code=code,
            scale=scale,
            value=value,
            mean=analytics.exact_mean(definitions[version_id], answers, scale)
            if mean is not None
            else None,
            at=at,
            response_id=response_id,
            session_start=session_start,
            by_patient=respondent == Respondent.PATIENT,
        )
        for (
            pid,
            code,
            scale,
            value,
            mean,
            at,
            response_id,
            session_start,
            respondent,
            version_id,
            answers,
        ) in rows
    ]
    return dosings, scores
