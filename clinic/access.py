"""The one place that decides who may see which patient, and who may do what.

Every view and selector that touches a patient goes through `patients_visible_to` or
`get_patient_for`. A patient a user may not see is answered with 404, exactly like a
patient that does not exist, so nothing leaks about who is in the clinic.
"""

from django.db.models import Exists, OuterRef, QuerySet
from django.http import Http404
from django.utils import timezone

from .models import CoachAssignment, Patient
from .roles import Role


def role_of(user) -> Role | None:
    if not user.is_authenticated or not user.is_active:
        return None
    return user.role


def sees_all_patients(user) -> bool:
    return role_of(user) in (Role.CLINICIAN, Role.ADMIN)


def is_admin(user) -> bool:
    return role_of(user) == Role.ADMIN


def can_edit_patients(user) -> bool:
    """Registering patients and changing their status: clinicians and admins."""
    return role_of(user) in (Role.CLINICIAN, Role.ADMIN)


def can_use_analytics(user) -> bool:
    """Cohort analytics and exports: clinicians and admins (de-identified by default)."""
    return role_of(user) in (Role.CLINICIAN, Role.ADMIN)


def can_manage_programs(user) -> bool:
    """Programs, enrolment, coach assignments, thresholds and users: admins only."""
    return is_admin(user)


def patients_visible_to(user) -> QuerySet[Patient]:
    role = role_of(user)
    if role in (Role.CLINICIAN, Role.ADMIN):
        return Patient.objects.all()
    if role == Role.COACH:
        # An assignment that starts in the future gives access from its start date.
        active_assignment = CoachAssignment.objects.filter(
            enrolment__patient=OuterRef("pk"),
            coach=user,
            end_date__isnull=True,
            start_date__lte=timezone.localdate(),
        )
        return Patient.objects.filter(Exists(active_assignment))
    return Patient.objects.none()


def get_patient_for(user, public_id) -> Patient:
    try:
        return patients_visible_to(user).get(public_id=public_id)
    except (Patient.DoesNotExist, ValueError) as exc:
        raise Http404("No such patient.") from exc
