"""A patient's calendar: the schedule a protocol generates on enrolment, extra
bookings, moves and cancellations (one session, or every future one on withdrawal).
"""

import datetime
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from clinic.audit import audit_record
from clinic.models import AuditEvent, Enrolment, Patient, Program

from .. import signals
from ..models import (
    Attendance,
    ProtocolStep,
    Room,
    Session,
    SessionKind,
)
from .conflicts import (
    _describe,
    _lock_people,
    _overlaps,
    _refuse_conflicts,
    _room_constraint_error,
    _session_patients,
    _validate_times,
)


def clinic_zone() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def local_datetime(day: datetime.date, at: datetime.time) -> datetime.datetime:
    """Wall-clock time in the clinic's zone; 10:00 stays 10:00 across daylight saving."""
    return datetime.datetime.combine(day, at, tzinfo=clinic_zone())


def _announce(patient_ids) -> None:
    """Inside the writing transaction: the flag engine above marks these patients stale."""
    signals.schedule_changed.send(sender=Session, patient_ids=sorted(set(patient_ids)))


def planned_schedule(*, program: Program, steps, start_date: datetime.date):
    """The protocol's sessions for an enrolment starting on `start_date`, as (step, start, end)
    in step order: group steps date from the program start, `previous dosing` steps from the
    dosing before them, and a late joiner of a group skips the steps held before they joined.
    Pure: the service below and the demo's bulk seeding build the same calendar from it."""
    planned = []
    last_dosing: datetime.date | None = None
    for step in steps:
        if step.anchor == ProtocolStep.Anchor.PREVIOUS_DOSING and last_dosing is not None:
            day = last_dosing + datetime.timedelta(days=step.day_offset)
        else:
            # A group program runs as a cohort: every step dates from the program start.
            base = program.start_date if program.is_group else start_date
            day = base + datetime.timedelta(days=step.day_offset)
        if step.kind == SessionKind.DOSING:
            last_dosing = day
        if day < start_date:
            continue
        start = local_datetime(day, step.start_time)
        planned.append((step, start, start + datetime.timedelta(minutes=step.duration_minutes)))
    return planned


def session_for_step(*, program, enrolment, step, start, end) -> Session:
    """The unsaved session a protocol step gives an enrolment (a group step's is shared by the
    program, so it names no enrolment). Scheduling and the demo's bulk seeding both build it."""
    return Session(
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
    steps = protocol.steps.order_by("order")
    for step, start, end in planned_schedule(
        program=program, steps=steps, start_date=enrolment.start_date
    ):
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
            session = session_for_step(
                program=program, enrolment=enrolment, step=step, start=start, end=end
            )
            session.save()
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
