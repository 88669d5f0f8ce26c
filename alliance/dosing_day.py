"""The dosing day as the care team sees it: the room's record from `sessions` (doses, vital
signs, adverse events, discharge) with the sedation and dissociation scales from `outcomes`
in one timeline. It lives here, in the top app, because it reads both."""

from django.utils import timezone

from outcomes.models import Response
from sessions import selectors as session_selectors
from sessions.models import Session

SEDATION = "moaa-s"
DISSOCIATION = "cadss"
ROOM_SCALES = (SEDATION, DISSOCIATION)
NAMES = {SEDATION: "MOAA/S sedation", DISSOCIATION: "CADSS dissociation"}
ALERT = 5  # MOAA/S 5: responds readily to name spoken in a normal tone


def _scale_responses(session: Session) -> list[Response]:
    return list(
        Response.objects.filter(session=session, version__instrument__code__in=ROOM_SCALES)
        .select_related("version__instrument", "patient")
        .prefetch_related("scores")
        .order_by("administered_at", "id")
    )


def dosing_day(*, session: Session) -> session_selectors.DosingDay:
    """The session's dosing-day record with the scales added to its timeline."""
    day = session_selectors.dosing_day(session=session)
    for response in _scale_responses(session):
        primary = response.primary
        shown = f"{primary.shown} ({primary.band})" if primary.band else primary.shown or "—"
        day.entries.append(
            session_selectors.TimelineEntry(
                response.administered_at,
                "scale",
                NAMES[response.version.instrument.code],
                shown,
                [],
                response.patient_id,
            )
        )
    day.entries.sort(key=lambda e: e.at)
    return day


def last_sedation(*, session: Session, patient_id: int) -> tuple[bool, str]:
    """Whether sedation has resolved (the latest MOAA/S after the dose is 5, alert), and the
    reading in words for the discharge page and its audit row."""
    responses = [
        r
        for r in _scale_responses(session)
        if r.patient_id == patient_id and r.version.instrument.code == SEDATION
    ]
    if session.actual_start is not None:
        responses = [r for r in responses if r.administered_at >= session.actual_start]
    if not responses:
        return False, "No MOAA/S rated after the dose."
    latest = responses[-1]
    value = latest.primary.value
    at = timezone.localtime(latest.administered_at)
    text = f"MOAA/S {latest.primary.shown} ({latest.primary.band}) at {at:%H:%M}"
    return value is not None and value >= ALERT, text
