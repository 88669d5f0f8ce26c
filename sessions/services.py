"""Writes about sessions: generate schedules, book, move, cancel, log, record dosing.

Every booking checks that no coach, patient or room is in two places at once. The rows that
could clash are locked first (the people and the room), so two requests cannot both pass.
"""

import datetime
import json
import secrets
import zoneinfo
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from clinic import access, dates
from clinic.audit import audit_record
from clinic.models import AuditEvent, CoachAssignment, Enrolment, Patient, Program
from clinic.services import record_patients_view

from . import monitoring, signals
from .models import (
    AdverseEvent,
    Attendance,
    CalendarFeed,
    Discharge,
    Protocol,
    ProtocolStep,
    Room,
    Session,
    SessionKind,
    VitalLimits,
    VitalSigns,
)
from .selectors import VITAL_LIMIT_FIELDS, limits_for

PROTOCOLS_DIR = Path(__file__).resolve().parent / "protocols"

# Sane dose ranges by substance and unit, for catching typing mistakes (mg vs µg, a missing
# decimal point), not clinical limits:
# - psilocybin 1-60 mg oral (trials used 10-30 mg/70 kg, or 0.2-0.4 mg/kg);
# - MDMA 40-180 mg (the phase 3 trials: 80-120 mg, then a 40-60 mg supplemental half dose);
# - ketamine by injection (IV, IM) 0.1-2 mg/kg, so the weight is required; intranasal 5-200 mg
#   (esketamine is 28-84 mg); oral or sublingual 5-400 mg, because only about a fifth to a
#   third is absorbed that way and lozenges of 300-400 mg are in use.
DOSE_RANGES_MG = {
    Program.Modality.PSILOCYBIN: (Decimal("1"), Decimal("60")),
    Program.Modality.MDMA: (Decimal("40"), Decimal("180")),
    Program.Modality.KETAMINE: (Decimal("5"), Decimal("200")),
}
KETAMINE_MG_PER_KG = (Decimal("0.1"), Decimal("2"))
KETAMINE_ORAL_MG = (Decimal("5"), Decimal("400"))
PARENTERAL = {Session.Route.INTRAVENOUS, Session.Route.INTRAMUSCULAR}
ORAL = {Session.Route.ORAL, Session.Route.SUBLINGUAL}

# Which assignment role facilitates which kind of session.
ROLE_KINDS = {
    CoachAssignment.Role.LEAD: set(SessionKind.values),
    CoachAssignment.Role.PREPARATION: {SessionKind.PREPARATION},
    CoachAssignment.Role.DOSING: {SessionKind.DOSING},
    CoachAssignment.Role.INTEGRATION: {SessionKind.INTEGRATION, SessionKind.FOLLOW_UP},
}


def clinic_zone() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def local_datetime(day: datetime.date, at: datetime.time) -> datetime.datetime:
    """Wall-clock time in the clinic's zone; 10:00 stays 10:00 across daylight saving."""
    return datetime.datetime.combine(day, at, tzinfo=clinic_zone())


# --- protocols ------------------------------------------------------------------------------


@transaction.atomic
def load_protocols(
    *,
    directory: Path = PROTOCOLS_DIR,
    Protocol=Protocol,
    ProtocolStep=ProtocolStep,  # noqa: N803
) -> list:
    """Create or update the shipped protocols; running it again changes nothing.

    The model classes are parameters so the data migration can pass its historical models.
    """
    loaded = []
    has_monitoring = any(f.name == "monitoring" for f in ProtocolStep._meta.get_fields())
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text())
        protocol, _ = Protocol.objects.update_or_create(
            name=data["name"],
            defaults={
                "description": data["description"],
                "modality": data["modality"],
                "min_preparation_before_dosing": data["min_preparation_before_dosing"],
            },
        )
        for step in data["steps"]:
            if step.get("monitoring") and (
                problems := monitoring.schedule_errors(step["monitoring"])
            ):
                raise ValueError(f"{path.name}, step {step['order']}: {'; '.join(problems)}")
            ProtocolStep.objects.update_or_create(
                protocol=protocol,
                order=step["order"],
                defaults={
                    "kind": step["kind"],
                    "label": step["label"],
                    "anchor": step["anchor"],
                    "day_offset": step["day_offset"],
                    "start_time": datetime.time.fromisoformat(step["start_time"]),
                    "duration_minutes": step["duration_minutes"],
                    "is_group": step["is_group"],
                    "instruments_due": step["instruments_due"],
                    # Older migrations' historical models have no monitoring column.
                    **({"monitoring": step.get("monitoring", {})} if has_monitoring else {}),
                },
            )
        protocol.steps.filter(order__gt=len(data["steps"])).delete()
        loaded.append(protocol)
    return loaded


# --- conflicts ------------------------------------------------------------------------------


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


# --- schedules ------------------------------------------------------------------------------


def _announce(patient_ids) -> None:
    """Inside the writing transaction: the flag engine above marks these patients stale."""
    signals.schedule_changed.send(sender=Session, patient_ids=sorted(set(patient_ids)))


@transaction.atomic
def schedule_for_enrolment(*, actor, enrolment: Enrolment) -> list[Session]:
    """Create the protocol's sessions for a new enrolment (group steps are shared)."""
    program = enrolment.program
    protocol = program.protocol
    if protocol is None:
        return []
    patient = enrolment.patient
    _lock_people(patients=[patient])
    created = []
    last_dosing: datetime.date | None = None
    for step in protocol.steps.order_by("order"):
        if step.anchor == ProtocolStep.Anchor.PREVIOUS_DOSING and last_dosing is not None:
            day = last_dosing + datetime.timedelta(days=step.day_offset)
        else:
            # A group program runs as a cohort: every step dates from the program start.
            base = program.start_date if program.is_group else enrolment.start_date
            day = base + datetime.timedelta(days=step.day_offset)
        if step.kind == SessionKind.DOSING:
            last_dosing = day
        if day < enrolment.start_date:
            continue  # a late joiner of a group is not put on sessions held before they joined
        start = local_datetime(day, step.start_time)
        end = start + datetime.timedelta(minutes=step.duration_minutes)
        session = None
        if step.is_group:
            session = Session.objects.filter(
                program=program, protocol_step=step, is_group=True
            ).first()
        if session is not None:
            _refuse_conflicts(
                start=session.scheduled_start,
                end=session.scheduled_end,
                patients=[patient],
                exclude_ids=[session.pk],
            )
        else:
            _refuse_conflicts(start=start, end=end, patients=[patient])
            session = Session.objects.create(
                program=program,
                enrolment=None if step.is_group else enrolment,
                protocol_step=step,
                kind=step.kind,
                label=step.label,
                is_group=step.is_group,
                scheduled_start=start,
                scheduled_end=end,
                substance=program.modality if step.kind == SessionKind.DOSING else "",
            )
            created.append(session)
        Attendance.objects.get_or_create(
            session=session, patient=patient, defaults={"enrolment": enrolment}
        )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.CREATE,
        target=enrolment,
        patient=patient,
        detail={"schedule": protocol.name, "sessions": len(created)},
    )
    _announce([patient.pk])
    return created


@transaction.atomic
def session_book(
    *,
    actor,
    program: Program,
    kind: str,
    start: datetime.datetime,
    end: datetime.datetime,
    enrolment: Enrolment | None = None,
    label: str = "",
    room: Room | None = None,
    facilitators=(),
) -> Session:
    """Book one extra session (e.g. an added preparation session before dosing)."""
    _validate_times(start, end)
    if kind == SessionKind.DOSING and enrolment is None:
        raise ValidationError({"kind": "A dosing session is for one patient."})
    is_group = enrolment is None
    if is_group and not program.is_group:
        raise ValidationError({"enrolment": "Choose the patient this session is for."})
    enrolments = (
        [enrolment]
        if enrolment
        else list(
            program.enrolments.filter(status=Enrolment.Status.ACTIVE).select_related("patient")
        )
    )
    patients = [e.patient for e in enrolments]
    _lock_people(coaches=facilitators, patients=patients, rooms=[room])
    _refuse_conflicts(start=start, end=end, coaches=facilitators, patients=patients, room=room)
    try:
        with transaction.atomic():
            session = Session.objects.create(
                program=program,
                enrolment=enrolment,
                kind=kind,
                label=label,
                is_group=is_group,
                scheduled_start=start,
                scheduled_end=end,
                room=room,
                substance=program.modality if kind == SessionKind.DOSING else "",
            )
    except IntegrityError as exc:
        raise _room_constraint_error(exc, room) from exc
    session.facilitators.set(facilitators)
    Attendance.objects.bulk_create(
        [Attendance(session=session, patient_id=e.patient_id, enrolment=e) for e in enrolments]
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.CREATE,
        target=session,
        patient=enrolment.patient if enrolment else None,
    )
    if kind == SessionKind.DOSING:
        ids = [e.patient_id for e in enrolments]
        _announce(ids)
    return session


def _following(session: Session):
    later = Session.objects.filter(
        scheduled_start__gt=session.scheduled_start, status=Session.Status.SCHEDULED
    ).exclude(pk=session.pk)
    if session.is_group:
        return later.filter(program=session.program, is_group=True)
    return later.filter(enrolment=session.enrolment)


@transaction.atomic
def session_reschedule(
    *,
    actor,
    session: Session,
    start: datetime.datetime,
    end: datetime.datetime,
    room: Room | None = None,
    shift_following: bool = False,
) -> list[Session]:
    """Move one session; with `shift_following`, move the later ones by the same amount."""
    session = Session.objects.select_for_update().get(pk=session.pk)
    if session.status != Session.Status.SCHEDULED:
        raise ValidationError("Only a scheduled session can be moved.")
    _validate_times(start, end)
    delta = start - session.scheduled_start
    moves = [(session, start, end, room)]
    if shift_following and delta:
        for later in _following(session).select_for_update():
            moves.append(
                (later, later.scheduled_start + delta, later.scheduled_end + delta, later.room)
            )
    moving_ids = [s.pk for s, *_ in moves]
    people = {m.pk: (list(m.facilitators.all()), _session_patients(m)) for m, *_ in moves}
    _lock_people(
        coaches={c for coaches, _ in people.values() for c in coaches},
        patients={p for _, patients in people.values() for p in patients},
        rooms={new_room for *_, new_room in moves},
    )
    for moved, new_start, new_end, new_room in moves:
        coaches, patients = people[moved.pk]
        _refuse_conflicts(
            start=new_start,
            end=new_end,
            coaches=coaches,
            patients=patients,
            room=new_room,
            exclude_ids=moving_ids,
        )
    _refuse_clashes_among(moves, people)
    # Write the later sessions first when moving later (earlier first when moving earlier), so
    # no row passes through another's old slot and the room constraint holds at every step.
    for moved, new_start, new_end, new_room in sorted(
        moves, key=lambda m: m[0].scheduled_start, reverse=delta > datetime.timedelta(0)
    ):
        moved.scheduled_start, moved.scheduled_end, moved.room = new_start, new_end, new_room
        try:
            with transaction.atomic():
                moved.save(update_fields=["scheduled_start", "scheduled_end", "room"])
        except IntegrityError as exc:
            raise _room_constraint_error(exc, new_room) from exc
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=session,
        patient=session.enrolment.patient if session.enrolment else None,
        detail={"moved": len(moves), "by_minutes": int(delta.total_seconds() // 60)},
    )
    if any(m.kind == SessionKind.DOSING for m, *_ in moves):
        ids = {p.pk for m, *_ in moves for p in _session_patients(m)}
        _announce(ids)
    return [m for m, *_ in moves]


def _refuse_clashes_among(moves, people) -> None:
    """Sessions moved together must not clash with each other in their new places either."""
    for index, (first, first_start, first_end, first_room) in enumerate(moves):
        for second, second_start, second_end, second_room in moves[index + 1 :]:
            if not _overlaps(first_start, first_end, second_start, second_end):
                continue
            first_coaches, first_patients = people[first.pk]
            second_coaches, second_patients = people[second.pk]
            same_coach = {c.pk for c in first_coaches} & {c.pk for c in second_coaches}
            same_patient = {p.pk for p in first_patients} & {p.pk for p in second_patients}
            same_room = first_room is not None and first_room == second_room
            if same_coach or same_patient or same_room:
                raise ValidationError(
                    {"scheduled_start": f"The new time overlaps {_describe(second)}."}
                )


@transaction.atomic
def session_cancel(*, actor, session: Session, reason: str) -> Session:
    session = Session.objects.select_for_update().get(pk=session.pk)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why the session is cancelled."})
    if session.status != Session.Status.SCHEDULED:
        raise ValidationError("Only a scheduled session can be cancelled.")
    session.status = Session.Status.CANCELLED
    session.status_reason = reason
    session.save(update_fields=["status", "status_reason"])
    session.attendances.update(status=Attendance.Status.CANCELLED)
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=session,
        patient=session.enrolment.patient if session.enrolment else None,
        detail={"status": Session.Status.CANCELLED},
    )
    if session.is_dosing:
        ids = list(session.attendances.values_list("patient_id", flat=True))
        _announce(ids)
    return session


@transaction.atomic
def cancel_future_sessions_for_patient(*, actor, patient: Patient, reason: str) -> int:
    """On withdrawal: individual sessions are cancelled, group places are released. Each
    cancelled session is audited, and flags are recomputed (a cancelled dosing's clear)."""
    now = timezone.now()
    individual = list(
        Session.objects.select_for_update().filter(
            enrolment__patient=patient,
            is_group=False,
            status=Session.Status.SCHEDULED,
            scheduled_start__gte=now,
        )
    )
    Session.objects.filter(pk__in=[s.pk for s in individual]).update(
        status=Session.Status.CANCELLED, status_reason=reason
    )
    places = Attendance.objects.filter(
        patient=patient,
        session__status__in=[Session.Status.SCHEDULED, Session.Status.CANCELLED],
        session__scheduled_start__gte=now,
    ).exclude(status=Attendance.Status.CANCELLED)
    released = list(places.filter(session__is_group=True).select_related("session"))
    places.update(status=Attendance.Status.CANCELLED)
    for session in individual:
        audit_record(
            actor=actor,
            action=AuditEvent.Action.UPDATE,
            target=session,
            patient=patient,
            detail={
                "status": Session.Status.CANCELLED,
                "reason": reason,
                "why": "patient withdrawn",
            },
        )
    for place in released:
        audit_record(
            actor=actor,
            action=AuditEvent.Action.UPDATE,
            target=place.session,
            patient=patient,
            detail={
                "attendance": Attendance.Status.CANCELLED,
                "reason": reason,
                "why": "patient withdrawn",
            },
        )
    _announce([patient.pk])
    return len(individual)


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


def _check_dose(*, substance, dose_mg, weight_kg, route) -> dict:
    errors = {}
    if not substance:
        errors["substance"] = "Name the substance given."
    if dose_mg is None:
        errors["dose_mg"] = "Enter the dose in mg."
        return errors
    if dose_mg <= 0:
        errors["dose_mg"] = "The dose must be more than 0 mg."
        return errors
    if not route:
        errors["route"] = "Choose the route."
    if substance == Program.Modality.KETAMINE and route in PARENTERAL:
        if not weight_kg:
            errors["weight_kg"] = "Ketamine by injection is dosed by weight: enter the weight."
        else:
            low, high = KETAMINE_MG_PER_KG
            per_kg = dose_mg / weight_kg
            if not low <= per_kg <= high:
                errors["dose_mg"] = (
                    f"{per_kg:.2f} mg/kg is outside the expected {low}-{high} mg/kg for "
                    "ketamine by injection. Check the dose and the weight."
                )
    elif substance in DOSE_RANGES_MG:
        low, high = DOSE_RANGES_MG[substance]
        if substance == Program.Modality.KETAMINE and route in ORAL:
            low, high = KETAMINE_ORAL_MG
        if not low <= dose_mg <= high:
            label = Program.Modality(substance).label.lower()
            errors["dose_mg"] = (
                f"{dose_mg} mg is outside the expected {low}-{high} mg for {label}. "
                "Check the unit (mg, not µg) and the decimal point."
            )
    if weight_kg is not None and not Decimal("25") <= weight_kg <= Decimal("300"):
        errors["weight_kg"] = "Enter a weight between 25 and 300 kg."
    return errors


@transaction.atomic
def dosing_record(
    *,
    actor,
    session: Session,
    substance: str,
    dose_mg: Decimal | None,
    route: str,
    weight_kg: Decimal | None = None,
    actual_start: datetime.datetime | None = None,
    actual_end: datetime.datetime | None = None,
) -> Session:
    session = Session.objects.select_for_update().get(pk=session.pk)
    if not session.is_dosing:
        raise ValidationError("Dosing details belong to dosing sessions only.")
    errors = _check_dose(substance=substance, dose_mg=dose_mg, weight_kg=weight_kg, route=route)
    if message := dates.planned_day_error(actual_start, what="the dosing's start"):
        errors["actual_start"] = message
    if message := dates.planned_day_error(actual_end, what="the dosing's end"):
        errors["actual_end"] = message
    if not errors.keys() & {"actual_start", "actual_end"}:
        if actual_start and actual_end and actual_end <= actual_start:
            errors["actual_end"] = "The dosing must end after it starts."
        elif message := dates.length_error(actual_start, actual_end, what="a dosing"):
            errors["actual_end"] = message
    if errors:
        raise ValidationError(errors)
    session.substance, session.dose_mg, session.route = substance, dose_mg, route
    session.weight_kg, session.actual_start, session.actual_end = (
        weight_kg,
        actual_start,
        actual_end,
    )
    session.save()
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=session,
        patient=session.enrolment.patient if session.enrolment else None,
        detail={"dosing": "recorded"},
    )
    return session


@transaction.atomic
def facilitators_for_assignment(*, assignment: CoachAssignment) -> list[Session]:
    """Make a newly assigned coach facilitator of the enrolment's upcoming sessions of their
    role, skipping (and returning) those that clash with the coach's other sessions."""
    kinds = ROLE_KINDS[CoachAssignment.Role(assignment.role)]
    coach = assignment.coach
    _lock_people(coaches=[coach])
    upcoming = Session.objects.filter(
        Q(enrolment=assignment.enrolment)
        | Q(is_group=True, attendances__enrolment=assignment.enrolment),
        kind__in=kinds,
        status=Session.Status.SCHEDULED,
        scheduled_start__gte=timezone.now(),
    ).distinct()
    skipped = []
    for session in upcoming:
        if session.facilitators.filter(pk=coach.pk).exists():
            continue
        if find_conflicts(
            start=session.scheduled_start,
            end=session.scheduled_end,
            coaches=[coach],
            exclude_ids=[session.pk],
        ):
            skipped.append(session)
            continue
        session.facilitators.add(coach)
    return skipped


@transaction.atomic
def facilitators_end_assignment(*, assignment: CoachAssignment) -> None:
    """An ended assignment stops the coach facilitating the enrolment's upcoming sessions."""
    for session in Session.objects.filter(
        enrolment=assignment.enrolment,
        status=Session.Status.SCHEDULED,
        scheduled_start__gte=timezone.now(),
        facilitators=assignment.coach,
    ):
        session.facilitators.remove(assignment.coach)


@transaction.atomic
def feed_create(*, actor, show_details: bool = False) -> str:
    """A new private calendar link for the coach; any previous one stops working. Events
    carry record numbers and session kinds only when the coach opts in (`show_details`)."""
    feed_revoke(actor=actor)
    token = secrets.token_urlsafe(32)
    feed = CalendarFeed.objects.create(
        coach=actor, token_hash=CalendarFeed.hash_token(token), show_details=show_details
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.CREATE,
        target=feed,
        detail={"show_details": show_details},
    )
    return token


@transaction.atomic
def feed_revoke(*, actor) -> int:
    feeds = list(CalendarFeed.objects.select_for_update().filter(coach=actor, revoked_at=None))
    for feed in feeds:
        feed.revoked_at = timezone.now()
        feed.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor, action=AuditEvent.Action.UPDATE, target=feed, detail={"revoked": True}
        )
    return len(feeds)


# --- the dosing day: vital signs, adverse events, discharge ----------------------------------

# A reading may be typed in up to a day late (it keeps its measured time), never ahead.
LATE_ENTRY = datetime.timedelta(hours=24)
CLOCK_SKEW = datetime.timedelta(minutes=5)


def _patient_of(session: Session, patient: Patient | None) -> Patient:
    """The dosed patient: the enrolment's, or (a group dosing) one of the attendees."""
    if not session.is_group:
        return session.enrolment.patient
    if patient is None or not session.attendances.filter(patient=patient).exists():
        raise ValidationError({"patient": "Choose a patient booked on this session."})
    return patient


def _check_measured_at(session: Session, measured_at: datetime.datetime | None) -> str | None:
    now = timezone.now()
    if measured_at is None:
        return "Enter when it was measured."
    if measured_at > now + CLOCK_SKEW:
        return "The time measured cannot be in the future."
    if measured_at < session.scheduled_start - datetime.timedelta(hours=12):
        return "The time measured is long before this session started."
    if measured_at < now - LATE_ENTRY:
        return "Readings are entered within 24 hours of measuring them."
    return None


@transaction.atomic
def vitals_record(
    *,
    actor,
    session: Session,
    token,
    measured_at: datetime.datetime | None,
    systolic: int | None,
    diastolic: int | None,
    heart_rate: int | None,
    spo2: int | None,
    respiratory_rate: int | None = None,
    temperature_c: Decimal | None = None,
    point: str = "",
    taken_by=None,
    patient: Patient | None = None,
    note: str = "",
) -> VitalSigns:
    """One set of vital signs for a dosing. The same `token` twice (a double tap) returns
    the first reading; an implausible value is refused with its range and nothing is saved.
    `entered_at` is now; `measured_at` is when it was taken (late entry keeps it)."""
    existing = VitalSigns.objects.filter(token=token).first()
    if existing is not None:
        if existing.session_id != session.pk:
            raise ValidationError("This form was already used for another session: reload it.")
        return existing
    session = Session.objects.select_for_update().get(pk=session.pk)
    if not session.is_dosing:
        raise ValidationError("Vital signs are recorded for dosing sessions.")
    if session.status in (Session.Status.CANCELLED, Session.Status.NO_SHOW):
        raise ValidationError(f"This dosing is {session.get_status_display().lower()}.")
    values = {
        "systolic": systolic,
        "diastolic": diastolic,
        "heart_rate": heart_rate,
        "spo2": spo2,
        "respiratory_rate": respiratory_rate,
        "temperature_c": temperature_c,
    }
    errors = monitoring.plausibility_errors(values)
    if message := _check_measured_at(session, measured_at):
        errors["measured_at"] = message
    schedule = monitoring.schedule_from(
        session.protocol_step.monitoring if session.protocol_step else None
    )
    if point and schedule.point(point) is None:
        errors["point"] = "Choose one of this dosing's observation points."
    if errors:
        raise ValidationError(errors)
    who = _patient_of(session, patient)
    try:
        with transaction.atomic():
            reading = VitalSigns.objects.create(
                session=session,
                patient=who,
                point=point,
                measured_at=measured_at,
                taken_by=taken_by or actor,
                entered_at=timezone.now(),
                entered_by=actor,
                note=(note or "").strip(),
                token=token,
                **values,
            )
    except IntegrityError:
        # The same token sent twice at the same moment: the other request saved it.
        return VitalSigns.objects.get(token=token)
    audit_record(
        actor=actor,
        action=AuditEvent.Action.CREATE,
        target=reading,
        patient=who,
        detail={"vitals": point or "unscheduled", "session": str(session.public_id)},
    )
    return reading


AE_FIELDS = (
    "description",
    "onset_at",
    "grade",
    "serious",
    "serious_criteria",
    "relatedness",
    "action_taken",
    "outcome",
    "resolved_on",
)


def _check_adverse_event(values: dict) -> dict:
    errors = {}
    if not (values.get("description") or "").strip():
        errors["description"] = "Describe what happened."
    onset = values.get("onset_at")
    if onset is None:
        errors["onset_at"] = "Enter when it began."
    elif onset > timezone.now() + CLOCK_SKEW:
        errors["onset_at"] = "The onset cannot be in the future."
    if values.get("grade") not in AdverseEvent.Grade.values:
        errors["grade"] = "Choose the severity grade."
    if values.get("relatedness") not in AdverseEvent.Relatedness.values:
        errors["relatedness"] = "Choose how related it is to the treatment."
    criteria = values.get("serious_criteria") or []
    if any(c not in AdverseEvent.Criterion.values for c in criteria):
        errors["serious_criteria"] = "Choose from the listed criteria."
    elif values.get("serious") and not criteria:
        errors["serious_criteria"] = "A serious event needs at least one criterion."
    elif criteria and not values.get("serious"):
        errors["serious"] = "The criteria chosen make this a serious event: tick serious."
    outcome = values.get("outcome") or AdverseEvent.Outcome.ONGOING
    resolved_on = values.get("resolved_on")
    if outcome not in AdverseEvent.Outcome.values:
        errors["outcome"] = "Choose the outcome."
    elif resolved_on is not None and outcome not in AdverseEvent.CLOSING:
        errors["resolved_on"] = "A resolution date goes with recovered, lasting effects or fatal."
    elif outcome in AdverseEvent.CLOSING and resolved_on is None:
        errors["resolved_on"] = "Enter the date it resolved."
    elif resolved_on is not None and onset is not None:
        if resolved_on < timezone.localtime(onset).date():
            errors["resolved_on"] = "It cannot resolve before it began."
        elif resolved_on > timezone.localdate():
            errors["resolved_on"] = "The resolution date cannot be in the future."
    return errors


def _announce_event(event: AdverseEvent) -> None:
    signals.adverse_event_saved.send(
        sender=AdverseEvent, patient_ids=[event.patient_id], serious=event.serious
    )


@transaction.atomic
def adverse_event_record(
    *,
    actor,
    patient: Patient,
    token,
    session: Session | None = None,
    description: str,
    onset_at: datetime.datetime | None,
    grade: str,
    relatedness: str,
    serious: bool = False,
    serious_criteria=(),
    action_taken: str = "",
    outcome: str = AdverseEvent.Outcome.ONGOING,
    resolved_on: datetime.date | None = None,
) -> AdverseEvent:
    """Record an adverse event of a dosing (`session`) or between sessions. The same token
    twice makes one event. A serious event is announced in this transaction, so the
    clinicians' flag is raised with it."""
    existing = AdverseEvent.objects.filter(token=token).first()
    if existing is not None:
        if existing.patient_id != patient.pk:
            raise ValidationError("This form was already used for another patient: reload it.")
        return existing
    values = {
        "description": description,
        "onset_at": onset_at,
        "grade": grade,
        "serious": serious,
        "serious_criteria": sorted(set(serious_criteria)),
        "relatedness": relatedness,
        "action_taken": (action_taken or "").strip(),
        "outcome": outcome or AdverseEvent.Outcome.ONGOING,
        "resolved_on": resolved_on,
    }
    errors = _check_adverse_event(values)
    if session is not None and not session.attendances.filter(patient=patient).exists():
        errors["session"] = "That session is not this patient's."
    if errors:
        raise ValidationError(errors)
    values["description"] = values["description"].strip()
    _lock_people(patients=[patient])
    event = AdverseEvent(
        patient=patient,
        session=session,
        recorded_by=actor,
        recorded_at=timezone.now(),
        token=token,
        **values,
    )
    event._change_reason = "recorded"
    event.save()
    audit_record(
        actor=actor,
        action=AuditEvent.Action.CREATE,
        target=event,
        patient=patient,
        detail={"adverse_event": event.grade, "serious": event.serious},
    )
    _announce_event(event)
    return event


@transaction.atomic
def adverse_event_update(*, actor, event: AdverseEvent, reason: str, **changes) -> AdverseEvent:
    """Change an adverse event (its outcome as it resolves, a corrected grade): the previous
    version is kept in its history with the reason, and the audit row names what changed."""
    unknown = set(changes) - set(AE_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    event = AdverseEvent.objects.select_for_update().get(pk=event.pk)
    before = {name: getattr(event, name) for name in AE_FIELDS}
    values = {**before, **changes}
    values["serious_criteria"] = sorted(set(values["serious_criteria"] or []))
    values["action_taken"] = (values["action_taken"] or "").strip()
    errors = _check_adverse_event(values)
    reason = (reason or "").strip()
    if not reason:
        errors["reason"] = "Say why the record is being changed."
    if errors:
        raise ValidationError(errors)
    values["description"] = values["description"].strip()
    changed = {name for name in AE_FIELDS if values[name] != before[name]}
    if not changed:
        raise ValidationError("Nothing was changed.")
    for name in changed:
        setattr(event, name, values[name])
    event._change_reason = reason
    event.save()
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=event,
        patient=event.patient,
        detail={
            "adverse_event": "changed",
            "reason": reason,
            "before": {n: str(before[n]) for n in sorted(changed)},
            "after": {n: str(values[n]) for n in sorted(changed)},
        },
    )
    _announce_event(event)
    return event


@transaction.atomic
def vital_limits_update(*, actor, program: Program, source: str = "", **values) -> VitalLimits:
    """Set a program's vital-sign alert thresholds (validated as a whole, audited)."""
    unknown = set(values) - set(VITAL_LIMIT_FIELDS)
    if unknown:
        raise ValidationError(f"Unknown limit(s): {', '.join(sorted(unknown))}.")
    current = limits_for(program)
    row = VitalLimits.objects.select_for_update().filter(program=program).first()
    before = {name: getattr(current, name) for name in VITAL_LIMIT_FIELDS}
    row = row or VitalLimits(program=program)
    for name in VITAL_LIMIT_FIELDS:
        setattr(row, name, values.get(name, before[name]))
    row.source = (source or "").strip() or current.source
    row.updated_by = actor
    row.full_clean()
    row.save()
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=row,
        detail={
            "program": program.pk,
            "limits": {
                n: {"old": before[n], "new": getattr(row, n)}
                for n in VITAL_LIMIT_FIELDS
                if before[n] != getattr(row, n)
            },
        },
    )
    return row


def _reading(vitals: VitalSigns, *, pre_dose: bool = False) -> monitoring.Reading:
    return monitoring.Reading(
        measured_at=vitals.measured_at,
        systolic=vitals.systolic,
        diastolic=vitals.diastolic,
        heart_rate=vitals.heart_rate,
        spo2=vitals.spo2,
        pre_dose=pre_dose,
        point_label=vitals.point,
    )


def discharge_facts(
    *, session: Session, patient: Patient, sedation_resolved: bool, escort: str, last_sedation=""
) -> monitoring.DischargeFacts:
    schedule = monitoring.schedule_from(
        session.protocol_step.monitoring if session.protocol_step else None
    )
    last = (
        VitalSigns.objects.filter(session=session, patient=patient)
        .order_by("-measured_at", "-id")
        .first()
    )
    return monitoring.DischargeFacts(
        now=timezone.now(),
        dose_at=session.actual_start,
        observation_minutes=schedule.observation_minutes,
        last_reading=_reading(last) if last else None,
        limits=limits_for(session.program),
        sedation_resolved=sedation_resolved,
        escort_confirmed=bool((escort or "").strip()),
        last_sedation=last_sedation,
    )


@transaction.atomic
def discharge_record(
    *,
    actor,
    session: Session,
    escort: str,
    sedation_resolved: bool,
    patient: Patient | None = None,
    last_sedation: str = "",
    override_note: str = "",
) -> Discharge:
    """The patient may leave: every condition holds (minimum observation time since the
    dose, last vitals within the program's limits, sedation resolved, escort or transport
    confirmed), or a clinician overrides the unmet ones with a note. Audited. Recording it
    twice returns the first."""
    session = Session.objects.select_for_update().get(pk=session.pk)
    if not session.is_dosing:
        raise ValidationError("A discharge belongs to a dosing session.")
    if session.status in (Session.Status.CANCELLED, Session.Status.NO_SHOW):
        raise ValidationError(f"This dosing is {session.get_status_display().lower()}.")
    who = _patient_of(session, patient)
    existing = Discharge.objects.filter(session=session, patient=who).first()
    if existing is not None:
        return existing
    facts = discharge_facts(
        session=session,
        patient=who,
        sedation_resolved=sedation_resolved,
        escort=escort,
        last_sedation=last_sedation,
    )
    problems = monitoring.discharge_problems(facts)
    note = (override_note or "").strip()
    if problems:
        if not note:
            raise ValidationError(["The patient is not ready to leave yet:", *problems])
        if not access.can_edit_patients(actor):  # clinicians and admins
            raise ValidationError(
                {"override_note": "Only a clinician can discharge despite the check."}
            )
    last = (
        VitalSigns.objects.filter(session=session, patient=who)
        .order_by("-measured_at", "-id")
        .first()
    )
    now = timezone.now()
    discharge = Discharge.objects.create(
        session=session,
        patient=who,
        decided_by=actor,
        decided_at=now,
        observed_minutes=(
            int((now - session.actual_start).total_seconds() // 60)
            if session.actual_start
            else None
        ),
        last_vitals=last,
        sedation_resolved=sedation_resolved,
        escort=(escort or "").strip(),
        overridden=problems,
        override_note=note if problems else "",
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=session,
        patient=who,
        detail={
            "discharge": "override" if problems else "check passed",
            "unmet": problems,
            "note": discharge.override_note,
            "sedation": last_sedation,
        },
    )
    return discharge
