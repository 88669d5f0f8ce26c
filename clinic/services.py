"""Every write about people and programs. Keyword-only, one transaction each, audited.

Rules are checked here (not only in forms) and refused with a `ValidationError` keyed by field,
so a form can show the message next to the field. Database constraints back the same rules
against races; a constraint that fires anyway is turned into the same message.
"""

import datetime

from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import dates, signals
from .access import role_of
from .audit import audit_record
from .models import (
    AuditEvent,
    CoachAssignment,
    Enrolment,
    Patient,
    PatientStatusChange,
    Program,
    User,
)
from .roles import Role

PATIENT_EDITABLE_FIELDS = (
    "record_number",
    "first_name",
    "last_name",
    "date_of_birth",
    "email",
    "email_consent",
    "phone",
)


def _clean_record_number(value: str) -> str:
    return (value or "").strip().upper()


def _validate_patient_fields(*, record_number, date_of_birth, exclude_pk=None) -> None:
    errors = {}
    if not record_number:
        errors["record_number"] = "Enter the clinic record number."
    elif (
        Patient.objects.filter(record_number__iexact=record_number).exclude(pk=exclude_pk).exists()
    ):
        errors["record_number"] = "Another patient already has this record number."
    if message := dates.birth_error(date_of_birth):
        errors["date_of_birth"] = message
    if errors:
        raise ValidationError(errors)


def _constraint_to_error(exc: IntegrityError, messages: dict[str, tuple[str, str]]):
    """Turn a named constraint violation into a field error; re-raise anything else."""
    text = str(exc)
    for constraint, (field, message) in messages.items():
        if constraint in text:
            return ValidationError({field: message})
    raise exc


@transaction.atomic
def patient_create(
    *,
    actor,
    record_number: str,
    first_name: str,
    last_name: str,
    date_of_birth: datetime.date,
    email: str = "",
    phone: str = "",
    email_consent: bool = False,
) -> Patient:
    record_number = _clean_record_number(record_number)
    _validate_patient_fields(record_number=record_number, date_of_birth=date_of_birth)
    try:
        with transaction.atomic():
            patient = Patient.objects.create(
                record_number=record_number,
                first_name=first_name.strip(),
                last_name=last_name.strip(),
                date_of_birth=date_of_birth,
                email=email.strip().lower(),
                phone=phone.strip(),
                email_consent=email_consent,
            )
    except IntegrityError as exc:
        raise _constraint_to_error(
            exc,
            {"record_number": ("record_number", "Another patient already has this record number.")},
        ) from exc
    PatientStatusChange.objects.create(
        patient=patient, from_status="", to_status=patient.status, changed_by=actor
    )
    audit_record(actor=actor, action=AuditEvent.Action.CREATE, target=patient, patient=patient)
    return patient


@transaction.atomic
def patient_update(*, actor, patient: Patient, **changes) -> Patient:
    unknown = set(changes) - set(PATIENT_EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"Not editable here: {', '.join(sorted(unknown))}")
    if "record_number" in changes:
        changes["record_number"] = _clean_record_number(changes["record_number"])
    _validate_patient_fields(
        record_number=changes.get("record_number", patient.record_number),
        date_of_birth=changes.get("date_of_birth", patient.date_of_birth),
        exclude_pk=patient.pk,
    )
    changed = [name for name, value in changes.items() if getattr(patient, name) != value]
    if not changed:
        return patient
    for name in changed:
        setattr(patient, name, changes[name])
    try:
        with transaction.atomic():
            patient.save(update_fields=[*changed, "updated_at"])
    except IntegrityError as exc:
        raise _constraint_to_error(
            exc,
            {"record_number": ("record_number", "Another patient already has this record number.")},
        ) from exc
    # Field names only: the audit log must not become a second copy of identifying data.
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=patient,
        patient=patient,
        detail={"fields": changed},
    )
    return patient


def _ended_today():
    # An enrolment that had not started yet ends on its start date, never before it.
    return Greatest(F("start_date"), Value(timezone.localdate()))


@transaction.atomic
def patient_change_status(*, actor, patient: Patient, to_status: str, reason: str = "") -> Patient:
    patient = Patient.objects.select_for_update().get(pk=patient.pk)
    reason = (reason or "").strip()
    current = Patient.Status(patient.status)
    try:
        target = Patient.Status(to_status)
    except ValueError as exc:
        raise ValidationError({"to_status": "Choose a status from the list."}) from exc
    if target not in Patient.TRANSITIONS[current]:
        allowed = ", ".join(Patient.Status(s).label for s in patient.allowed_next_statuses())
        raise ValidationError(
            {
                "to_status": f"A patient who is {current.label.lower()} cannot move to "
                f"{target.label.lower()}. Allowed next: {allowed or 'none'}."
            }
        )
    if target == Patient.Status.WITHDRAWN and not reason:
        raise ValidationError({"reason": "Say why the patient is withdrawing."})

    patient.status = target
    update_fields = ["status", "updated_at"]
    if target == Patient.Status.WITHDRAWN:
        patient.withdrawal_reason = reason
        update_fields.append("withdrawal_reason")
        # Data stays; open enrolments close so capacity and schedules free up.
        patient.enrolments.filter(status=Enrolment.Status.ACTIVE).update(
            status=Enrolment.Status.WITHDRAWN, end_date=_ended_today()
        )
        signals.patient_withdrawn.send(sender=Patient, patient=patient, actor=actor, reason=reason)
    elif target == Patient.Status.COMPLETED:
        patient.enrolments.filter(status=Enrolment.Status.ACTIVE).update(
            status=Enrolment.Status.COMPLETED, end_date=_ended_today()
        )
    patient.save(update_fields=update_fields)
    PatientStatusChange.objects.create(
        patient=patient, from_status=current, to_status=target, reason=reason, changed_by=actor
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.STATUS,
        target=patient,
        patient=patient,
        detail={"from": current.value, "to": target.value},
    )
    return patient


@transaction.atomic
def patient_enrol(
    *, actor, patient: Patient, program: Program, start_date: datetime.date
) -> Enrolment:
    # Lock the program row so two admins cannot both take the last place in a group.
    if message := dates.planned_day_error(start_date, what="the enrolment's start"):
        raise ValidationError({"start_date": message})
    program = Program.objects.select_for_update().get(pk=program.pk)
    patient = Patient.objects.select_for_update().get(pk=patient.pk)
    if not patient.is_active:
        raise ValidationError(
            {"patient": f"A {patient.get_status_display().lower()} patient cannot be enrolled."}
        )
    if not program.is_active:
        raise ValidationError({"program": "This program is closed to new enrolments."})
    if patient.enrolments.filter(program=program, status=Enrolment.Status.ACTIVE).exists():
        raise ValidationError({"program": "The patient is already enrolled in this program."})
    if program.is_group:
        taken = program.enrolments.filter(status=Enrolment.Status.ACTIVE).count()
        if taken >= program.capacity:
            raise ValidationError(
                {"program": f"This group is full ({taken} of {program.capacity} places taken)."}
            )
    try:
        with transaction.atomic():
            enrolment = Enrolment.objects.create(
                patient=patient, program=program, start_date=start_date, enrolled_by=actor
            )
    except IntegrityError as exc:
        raise _constraint_to_error(
            exc,
            {
                "enrolment_one_active_per_patient_program": (
                    "program",
                    "The patient is already enrolled in this program.",
                )
            },
        ) from exc
    audit_record(
        actor=actor,
        action=AuditEvent.Action.ENROL,
        target=enrolment,
        patient=patient,
        detail={"program": program.name},
    )
    signals.enrolment_created.send(sender=Enrolment, enrolment=enrolment, actor=actor)
    if patient.status in (Patient.Status.REFERRED, Patient.Status.SCREENING):
        previous = patient.status
        patient.status = Patient.Status.ENROLLED
        patient.save(update_fields=["status", "updated_at"])
        PatientStatusChange.objects.create(
            patient=patient,
            from_status=previous,
            to_status=patient.status,
            reason=f"Enrolled in {program.name}",
            changed_by=actor,
        )
    return enrolment


@transaction.atomic
def program_save(*, actor, program: Program) -> Program:
    """Create or change a program (the Django admin's form has validated it), audited with the
    fields that changed, old and new."""
    before = Program.objects.filter(pk=program.pk).values().first() if program.pk else None
    program.full_clean()
    program.save()
    after = Program.objects.filter(pk=program.pk).values().first()
    changed = {
        name: {"old": str(before[name]) if before else None, "new": str(value)}
        for name, value in after.items()
        if before is None or before[name] != value
    }
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE if before else AuditEvent.Action.CREATE,
        target=program,
        detail={"changes": changed},
    )
    return program


def _require_coach(user) -> None:
    if not user.is_active or not user.groups.filter(name=Role.COACH).exists():
        raise ValidationError({"coach": "Choose an active member of staff with the coach role."})


_ASSIGNMENT_CONSTRAINTS = {
    "assignment_one_active_lead": ("role", "This enrolment already has an active lead coach."),
    "assignment_no_duplicate_active": ("coach", "This coach already has this role here."),
}


@transaction.atomic
def coach_assign(
    *,
    actor,
    enrolment: Enrolment,
    coach,
    role: str,
    start_date: datetime.date | None = None,
) -> CoachAssignment:
    if message := dates.planned_day_error(start_date, what="the assignment's start"):
        raise ValidationError({"start_date": message})
    enrolment = Enrolment.objects.select_for_update().get(pk=enrolment.pk)
    _require_coach(coach)
    if not enrolment.is_active:
        raise ValidationError({"enrolment": "Coaches can only be assigned to an active enrolment."})
    active = enrolment.assignments.filter(end_date__isnull=True)
    if role == CoachAssignment.Role.LEAD and active.filter(role=role).exists():
        raise ValidationError(
            {"role": "This enrolment already has an active lead coach. Reassign instead."}
        )
    if active.filter(role=role, coach=coach).exists():
        raise ValidationError({"coach": "This coach already has this role here."})
    try:
        with transaction.atomic():
            assignment = CoachAssignment.objects.create(
                enrolment=enrolment,
                coach=coach,
                role=role,
                start_date=start_date or timezone.localdate(),
                assigned_by=actor,
            )
    except IntegrityError as exc:
        raise _constraint_to_error(exc, _ASSIGNMENT_CONSTRAINTS) from exc
    # Upcoming sessions of the role the coach could not be made facilitator of, because they
    # clash with the coach's other sessions: someone must find another facilitator or move them.
    not_facilitating = signals.replies(
        signals.assignment_started.send(sender=CoachAssignment, assignment=assignment, actor=actor)
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.ASSIGN,
        target=assignment,
        patient=enrolment.patient,
        detail={
            "coach": coach.pk,
            "role": role,
            "not_facilitating": [str(session.public_id) for session in not_facilitating],
        },
    )
    assignment.not_facilitating = not_facilitating
    return assignment


@transaction.atomic
def assignment_end(
    *, actor, assignment: CoachAssignment, end_date: datetime.date | None = None
) -> CoachAssignment:
    assignment = CoachAssignment.objects.select_for_update().get(pk=assignment.pk)
    end_date = end_date or timezone.localdate()
    if message := dates.planned_day_error(end_date, what="the assignment's end"):
        raise ValidationError({"end_date": message})
    if assignment.end_date is not None:
        raise ValidationError("This assignment has already ended.")
    if end_date < assignment.start_date:
        raise ValidationError({"end_date": "The end date is before the assignment started."})
    assignment.end_date = end_date
    assignment.save(update_fields=["end_date"])
    signals.assignment_ended.send(sender=CoachAssignment, assignment=assignment, actor=actor)
    audit_record(
        actor=actor,
        action=AuditEvent.Action.END_ASSIGNMENT,
        target=assignment,
        patient=assignment.enrolment.patient,
        detail={"coach": assignment.coach_id, "role": assignment.role},
    )
    return assignment


@transaction.atomic
def coach_reassign(
    *,
    actor,
    assignment: CoachAssignment,
    new_coach,
    start_date: datetime.date | None = None,
) -> CoachAssignment:
    """End the current assignment and give the same role to another coach; history is kept."""
    start_date = start_date or timezone.localdate()
    if message := dates.planned_day_error(start_date, what="the new assignment's start"):
        raise ValidationError({"start_date": message})
    if new_coach.pk == assignment.coach_id:
        raise ValidationError({"coach": "Choose a different coach."})
    _require_coach(new_coach)
    assignment_end(actor=actor, assignment=assignment, end_date=start_date)
    return coach_assign(
        actor=actor,
        enrolment=assignment.enrolment,
        coach=new_coach,
        role=assignment.role,
        start_date=start_date,
    )


def record_patient_view(*, actor, patient: Patient) -> None:
    audit_record(actor=actor, action=AuditEvent.Action.VIEW, target=patient, patient=patient)


def record_patients_view(*, actor, patients, via: str) -> None:
    """One VIEW row per patient shown on a page of several (search results, a group session).
    `via` says which page; never what was searched for (that may be a name)."""
    AuditEvent.objects.bulk_create(
        AuditEvent(
            actor=actor if actor is not None and actor.is_authenticated else None,
            action=AuditEvent.Action.VIEW,
            object_type=Patient._meta.label_lower,
            object_id=str(patient.public_id),
            patient=patient,
            detail={"via": via},
        )
        for patient in patients
    )


def user_set_role(*, user, role: Role) -> None:
    """Give a user exactly one role (used by the seed command and admin tooling)."""
    user.groups.set([Group.objects.get(name=role.value)])


# --- staff accounts, as admins manage them ---------------------------------------------------
#
# Admins manage other users here (the Django admin's user pages call these). Nothing here
# makes anyone a superuser (that is `manage.py createsuperuser`, on the server), and nobody
# but a superuser changes a superuser's account. Second-factor devices are only ever reset
# (deleted, so the person sets up a new one at their next sign-in), never read or edited.

USER_EDITABLE_FIELDS = ("email", "display_name", "is_active")


def _require_user_manager(actor, user) -> None:
    if actor is None or role_of(actor) != Role.ADMIN:
        raise PermissionDenied("Only admins manage staff accounts.")
    if user.is_superuser and not actor.is_superuser:
        raise PermissionDenied("Only a superuser changes a superuser's account.")


def _role_value(user) -> str:
    role = user.role
    return role.value if role else ""


@transaction.atomic
def user_create(
    *, actor, email: str, display_name: str, password: str | None, role: str = ""
) -> User:
    """A new member of staff with one role (or none yet). Never a superuser. Audited."""
    if actor is None or role_of(actor) != Role.ADMIN:
        raise PermissionDenied("Only admins manage staff accounts.")
    email = (email or "").strip().lower()
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": "Another account already uses this e-mail address."})
    user = User.objects.create_user(
        email=email, password=password, display_name=(display_name or "").strip()
    )
    audit_record(actor=actor, action=AuditEvent.Action.CREATE, target=user)
    if role:
        user_change_role(actor=actor, user=user, role=role)
        user.refresh_from_db()
    return user


@transaction.atomic
def user_change_role(*, actor, user, role: str) -> User:
    """Give a member of staff exactly one role (or none). `is_staff` follows the admin role,
    but the Django admin itself lets in superusers only (clinic/admin_site.py).

    Audited with the role before and after. "superuser" is not a role: it cannot be granted.
    """
    user = User.objects.select_for_update().get(pk=user.pk)
    _require_user_manager(actor, user)
    if role and role not in Role.values:
        raise ValidationError({"role": "Choose coach, clinician or admin."})
    if user.pk == actor.pk and role != Role.ADMIN:
        raise ValidationError({"role": "You cannot take away your own admin role."})
    before = {"role": _role_value(user), "is_staff": user.is_staff}
    user.groups.set([Group.objects.get(name=role)] if role else [])
    user.is_staff = role == Role.ADMIN or user.is_superuser
    user.save(update_fields=["is_staff"])
    after = {"role": role or "", "is_staff": user.is_staff}
    if before != after:
        audit_record(
            actor=actor,
            action=AuditEvent.Action.ROLE,
            target=user,
            detail={"before": before, "after": after},
        )
    return user


@transaction.atomic
def user_update(*, actor, user, **changes) -> User:
    """Change a member of staff's e-mail, name or whether the account is active. Audited
    with the values before and after (staff details, not patient data)."""
    unknown = set(changes) - set(USER_EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"Not editable here: {', '.join(sorted(unknown))}")
    user = User.objects.select_for_update().get(pk=user.pk)
    _require_user_manager(actor, user)
    if "email" in changes:
        changes["email"] = (changes["email"] or "").strip().lower()
        if User.objects.filter(email__iexact=changes["email"]).exclude(pk=user.pk).exists():
            raise ValidationError({"email": "Another account already uses this e-mail address."})
    if changes.get("is_active") is False and user.pk == actor.pk:
        raise ValidationError({"is_active": "You cannot deactivate your own account."})
    changed = [name for name, value in changes.items() if getattr(user, name) != value]
    if not changed:
        return user
    before = {name: getattr(user, name) for name in changed}
    for name in changed:
        setattr(user, name, changes[name])
    user.save(update_fields=changed)
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=user,
        detail={"before": before, "after": {name: changes[name] for name in changed}},
    )
    return user


@transaction.atomic
def user_reset_second_factor(*, actor, user) -> int:
    """Remove a member of staff's authenticator devices (a lost phone): they set up a new one
    at their next sign-in. Nobody sees or edits a device's secret. Audited; returns how many
    devices were removed."""
    user = User.objects.select_for_update().get(pk=user.pk)
    _require_user_manager(actor, user)
    devices = TOTPDevice.objects.filter(user=user)
    before = {"devices": devices.count(), "confirmed": devices.filter(confirmed=True).count()}
    removed, _ = devices.delete()
    audit_record(
        actor=actor,
        action=AuditEvent.Action.SECOND_FACTOR_RESET,
        target=user,
        detail={"before": before, "after": {"devices": 0, "confirmed": 0}},
    )
    return removed


@transaction.atomic
def user_invite(*, actor, email: str, display_name: str, role: str) -> User:
    """A new member of staff with one role and no password: they get an e-mail with a
    single-use link to choose one (Django's password-reset token, which stops working once
    the password is set, and expires after PASSWORD_RESET_TIMEOUT). Audited; the e-mail goes
    once the account is saved."""
    if role not in Role.values:
        raise ValidationError({"role": "Choose coach, clinician or admin."})
    user = user_create(
        actor=actor, email=email, display_name=display_name, password=None, role=role
    )
    link = invite_link(user=user)
    transaction.on_commit(
        lambda: send_mail(
            subject=f"Your {settings.CLINIC_NAME} account",
            message=(
                f"Hello {user.display_name},\n\n{actor.display_name} has given you a "
                f"{Role(role).label.lower()} account at {settings.CLINIC_NAME}. Choose your "
                f"password here (the link works once, for "
                f"{settings.PASSWORD_RESET_TIMEOUT // 86400} days):\n\n{link}\n\n"
                f"Then sign in with this e-mail address.\n"
            ),
            from_email=None,
            recipient_list=[user.email],
        )
    )
    return user


def invite_link(*, user) -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return settings.SITE_URL + reverse("password_set", args=[uid, token])
