"""The rows cohort analytics computes over."""

import datetime

from clinic.access import patients_visible_to
from clinic.models import Program
from outcomes.models import Score
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
    the analytics need for those patients: two queries, whatever the size of the cohort."""
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
    scores = [
        analytics.ScoreRow(patient_id=pid, code=code, scale=scale, value=value, mean=mean, at=at)
        for pid, code, scale, value, mean, at in Score.objects.filter(
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
        )
    ]
    return dosings, scores
