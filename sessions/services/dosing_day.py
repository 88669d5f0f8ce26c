"""The dosing day in the room: vital signs, adverse events and the discharge check."""

import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from clinic import access
from clinic.audit import audit_record
from clinic.models import AuditEvent, Patient, Program

from .. import monitoring, signals
from ..models import (
    AdverseEvent,
    Discharge,
    Session,
    VitalLimits,
    VitalSigns,
)
from ..selectors import VITAL_LIMIT_FIELDS, limits_for
from .conflicts import _lock_people

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
