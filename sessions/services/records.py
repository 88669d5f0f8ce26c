"""What happened at a session: logging it (attendance, duration, notes), correcting
a log with a reason, and the audit row for viewing it.
"""

import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from clinic.audit import audit_record
from clinic.models import AuditEvent
from clinic.services import record_patients_view

from ..models import (
    Attendance,
    Session,
    SessionKind,
)
from .scheduling import _announce

LOGGABLE = {Session.Status.COMPLETED, Session.Status.NO_SHOW, Session.Status.CANCELLED}


# What a log records, and so what a correction keeps the previous values of.
LOGGED_FIELDS = ("status", "duration_minutes", "notes", "status_reason")


def _check_log(*, session: Session, status: str, duration_minutes, notes: str) -> None:
    errors = {}
    if status not in LOGGABLE:
        errors["status"] = "Choose completed, no-show or cancelled."
    if status in (Session.Status.NO_SHOW, Session.Status.CANCELLED) and not notes.strip():
        errors["notes"] = "Give the reason in the note."
    if status == Session.Status.COMPLETED and not duration_minutes:
        errors["duration_minutes"] = "How long did the session last (minutes)?"
    if duration_minutes is not None and not 5 <= duration_minutes <= 720:
        errors["duration_minutes"] = "Enter a duration between 5 and 720 minutes."
    if session.scheduled_start > timezone.now() + datetime.timedelta(hours=1):
        errors["status"] = "This session has not happened yet."
    if errors:
        raise ValidationError(errors)


def _check_discharged(*, session: Session, status: str, attendance) -> None:
    """A dosing is logged completed only once everyone who was dosed has a discharge (the
    check passed, or a clinician overrode it with a note)."""
    if not session.is_dosing or status != Session.Status.COMPLETED:
        return
    present = [
        a.patient_id
        for a in session.attendances.all()
        if (attendance or {}).get(a.patient_id, Attendance.Status.ATTENDED) in Attendance.PRESENT
    ]
    discharged = set(session.discharges.values_list("patient_id", flat=True))
    if set(present) - discharged:
        raise ValidationError(
            {
                "status": "Record the discharge check before logging this dosing completed "
                "(Discharge on the session page)."
            }
        )


def _logged_values(session: Session) -> dict:
    return {name: getattr(session, name) for name in LOGGED_FIELDS}


def _apply_log(
    *, actor, session: Session, status: str, duration_minutes, notes: str, attendance
) -> list[int]:
    """Write the log onto the session and its attendance rows; the attendees' patient ids."""
    session.status = status
    session.duration_minutes = duration_minutes if status == Session.Status.COMPLETED else None
    if status == Session.Status.COMPLETED:
        session.notes, session.status_reason = notes.strip(), ""
    else:
        session.status_reason = notes.strip()
    session.logged_by = actor
    session.logged_at = timezone.now()
    session.save()
    rows = {a.patient_id: a for a in session.attendances.all()}
    for patient_id, row in rows.items():
        if attendance and patient_id in attendance:
            row.status = attendance[patient_id]
        elif status == Session.Status.COMPLETED:
            row.status = Attendance.Status.ATTENDED
        elif status == Session.Status.NO_SHOW:
            row.status = Attendance.Status.ABSENT
        else:
            row.status = Attendance.Status.CANCELLED
        row.save(update_fields=["status"])
    if session.kind in (SessionKind.PREPARATION, SessionKind.DOSING):
        ids = list(rows)
        _announce(ids)
    return list(rows)


@transaction.atomic
def session_log(
    *,
    actor,
    session: Session,
    status: str,
    duration_minutes: int | None = None,
    notes: str = "",
    attendance: dict[int, str] | None = None,
) -> Session:
    """The coach's after-session log: what happened, how long, a short note, who came.

    Only a scheduled session is logged. Sending the same log twice (a double submit) returns the
    session as logged; a different log of a logged session is refused: changing what was logged
    is a correction (`session_correct`), which needs a reason and keeps the previous values.
    """
    session = Session.objects.select_for_update().get(pk=session.pk)
    if session.status != Session.Status.SCHEDULED:
        if session.logged_at is not None and _logged_values(session) == _logged_values(
            _as_logged(session, status=status, duration_minutes=duration_minutes, notes=notes)
        ):
            return session
        raise ValidationError(
            {
                "status": f"This session is already logged as "
                f"{session.get_status_display().lower()}. To change that, correct the log "
                "(a correction needs a reason and keeps what was logged before)."
            }
        )
    _check_log(session=session, status=status, duration_minutes=duration_minutes, notes=notes)
    _check_discharged(session=session, status=status, attendance=attendance)
    _apply_log(
        actor=actor,
        session=session,
        status=status,
        duration_minutes=duration_minutes,
        notes=notes,
        attendance=attendance,
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=session,
        patient=session.enrolment.patient if session.enrolment else None,
        detail={"logged": status},
    )
    return session


def _as_logged(session: Session, *, status, duration_minutes, notes) -> Session:
    """A copy of the session with the log applied (not saved), to compare with the stored one."""
    copy = Session(**{name: getattr(session, name) for name in LOGGED_FIELDS})
    copy.status = status
    copy.duration_minutes = duration_minutes if status == Session.Status.COMPLETED else None
    if status == Session.Status.COMPLETED:
        copy.notes, copy.status_reason = (notes or "").strip(), ""
    else:
        copy.status_reason = (notes or "").strip()
    return copy


@transaction.atomic
def session_correct(
    *,
    actor,
    session: Session,
    status: str,
    duration_minutes: int | None,
    notes: str,
    reason: str,
    attendance: dict[int, str] | None = None,
) -> Session:
    """Correct the log of a session that was logged (or cancelled): the same rules as logging,
    plus a reason. The audit row keeps the values before and after the correction."""
    session = Session.objects.select_for_update().get(pk=session.pk)
    reason = (reason or "").strip()
    if session.status == Session.Status.SCHEDULED:
        raise ValidationError({"status": "This session is not logged yet: log it instead."})
    errors = {}
    if not reason:
        errors["reason"] = "Say why the log is being corrected."
    try:
        _check_log(session=session, status=status, duration_minutes=duration_minutes, notes=notes)
    except ValidationError as exc:
        errors = {**exc.message_dict, **errors}
    if not errors:
        try:
            _check_discharged(session=session, status=status, attendance=attendance)
        except ValidationError as exc:
            errors = exc.message_dict
    if errors:
        raise ValidationError(errors)
    before = _logged_values(session)
    attendance_before = {a.patient_id: a.status for a in session.attendances.all()}
    if before == _logged_values(
        _as_logged(session, status=status, duration_minutes=duration_minutes, notes=notes)
    ) and not (attendance and attendance.items() - attendance_before.items()):
        raise ValidationError("Nothing was changed: the log already says this.")
    _apply_log(
        actor=actor,
        session=session,
        status=status,
        duration_minutes=duration_minutes,
        notes=notes,
        attendance=attendance,
    )
    attendance_after = {a.patient_id: a.status for a in session.attendances.all()}
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=session,
        patient=session.enrolment.patient if session.enrolment else None,
        detail={
            "corrected": True,
            "reason": reason,
            "before": {**before, "attendance": _keyed(attendance_before)},
            "after": {**_logged_values(session), "attendance": _keyed(attendance_after)},
        },
    )
    return session


def _keyed(attendance: dict[int, str]) -> dict[str, str]:
    return {str(patient_id): status for patient_id, status in attendance.items()}


def record_session_view(*, actor, session: Session) -> None:
    """A VIEW audit row for each patient booked on the session (a group: every attendee)."""
    record_patients_view(
        actor=actor, patients=[a.patient for a in session.attendances.all()], via="session"
    )
