"""Nobody in two places at once: the checks every booking runs, and the row locks
that make them hold under concurrency (the people and the room are locked first,
so two requests cannot both pass).
"""

import datetime

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.db.models import Exists, OuterRef
from django.utils import timezone

from clinic import dates
from clinic.models import Patient

from ..models import (
    Attendance,
    Room,
    Session,
)


def _describe(session: Session) -> str:
    start = timezone.localtime(session.scheduled_start)
    return f"{session.label or session.get_kind_display()} on {start:%a %d %b %H:%M}"


def find_conflicts(
    *,
    start: datetime.datetime,
    end: datetime.datetime,
    coaches=(),
    patients=(),
    room: Room | None = None,
    exclude_ids=(),
) -> list[str]:
    """Messages naming each overlapping session for the same coach, patient or room."""
    overlapping = (
        Session.objects.filter(
            scheduled_start__lt=end,
            scheduled_end__gt=start,
            status=Session.Status.SCHEDULED,
        )
        .exclude(pk__in=list(exclude_ids))
        .prefetch_related("facilitators")
    )
    messages = []
    coach_ids = {c.pk for c in coaches}
    if coach_ids:
        for other in overlapping.filter(facilitators__in=coach_ids).distinct():
            names = ", ".join(f.display_name for f in other.facilitators.all() if f.pk in coach_ids)
            messages.append(f"{names} already facilitates {_describe(other)}.")
    patient_ids = {p.pk for p in patients}
    if patient_ids:
        # Per attendee: a group session where someone else's place was cancelled still counts.
        taking_part = Attendance.objects.filter(
            session=OuterRef("pk"), patient__in=patient_ids
        ).exclude(status=Attendance.Status.CANCELLED)
        names = {p.pk: p.full_name for p in patients}
        for other in overlapping.filter(Exists(taking_part)).prefetch_related("attendances"):
            if len(patient_ids) == 1:
                messages.append(f"The patient already has {_describe(other)}.")
                continue
            busy = sorted(
                names[a.patient_id]
                for a in other.attendances.all()
                if a.patient_id in patient_ids and a.status != Attendance.Status.CANCELLED
            )
            verb = "has" if len(busy) == 1 else "have"
            messages.append(f"{', '.join(busy)} already {verb} {_describe(other)}.")
    if room is not None:
        for other in overlapping.filter(room=room):
            messages.append(f"{room} is booked for {_describe(other)}.")
    return messages


def _refuse_conflicts(**kwargs) -> None:
    messages = find_conflicts(**kwargs)
    if messages:
        raise ValidationError({"scheduled_start": messages})


def _lock_people(*, coaches=(), patients=(), rooms=()) -> None:
    """Lock the rows of everyone (and the room) a booking involves, always in the same order
    (users, patients, rooms; each by id), so a second booking for any of them waits for this
    transaction and then sees its session."""
    User = get_user_model()
    list(User.objects.select_for_update().filter(pk__in=[c.pk for c in coaches]).order_by("pk"))
    list(Patient.objects.select_for_update().filter(pk__in=[p.pk for p in patients]).order_by("pk"))
    room_ids = [r.pk for r in rooms if r is not None]
    list(Room.objects.select_for_update().filter(pk__in=room_ids).order_by("pk"))


def _room_constraint_error(exc: IntegrityError, room) -> ValidationError:
    """The exclusion constraint only fires if a write skipped the checks above; say so plainly."""
    if "session_room_no_overlap" in str(exc):
        return ValidationError({"room": f"{room or 'The room'} is already booked at that time."})
    raise exc


def _overlaps(a_start, a_end, b_start, b_end) -> bool:
    return a_start < b_end and b_start < a_end


def _session_patients(session: Session) -> list[Patient]:
    return [
        a.patient
        for a in session.attendances.select_related("patient").exclude(
            status=Attendance.Status.CANCELLED
        )
    ]


def _validate_times(start, end) -> None:
    errors = {}
    if message := dates.planned_day_error(start, what="a session's start"):
        errors["scheduled_start"] = message
    if message := dates.planned_day_error(end, what="a session's end"):
        errors["scheduled_end"] = message
    if errors:
        raise ValidationError(errors)
    if end <= start:
        raise ValidationError({"scheduled_end": "The session must end after it starts."})
    if message := dates.length_error(start, end, what="a session"):
        raise ValidationError({"scheduled_end": message})
