"""Reads about people and programs, already scoped to what the user may see."""

from django.contrib.auth import get_user_model
from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404

from .access import get_patient_for, patients_visible_to
from .models import AuditEvent, CoachAssignment, Enrolment, Patient, Program
from .roles import Role

# A name and a record number fit in this; longer input is not a search (forms say so first).
SEARCH_MAX_LENGTH = 100
SEARCH_MAX_WORDS = 6


def search_words(query: str) -> list[str]:
    """The words searched for: NUL characters (which PostgreSQL text cannot hold) dropped,
    at most SEARCH_MAX_WORDS words of the first SEARCH_MAX_LENGTH characters."""
    text = (query or "").replace("\x00", "")[:SEARCH_MAX_LENGTH]
    return text.split()[:SEARCH_MAX_WORDS]


def search_patients(qs: QuerySet[Patient], query: str) -> QuerySet[Patient]:
    """Every word must match a name or the record number ("ada love", "RP-0012")."""
    for word in search_words(query):
        qs = qs.filter(
            Q(first_name__icontains=word)
            | Q(last_name__icontains=word)
            | Q(record_number__icontains=word)
        )
    return qs


def current_care_prefetch() -> Prefetch:
    """`patient.active_enrolments`, each with its program and current coach assignments;
    also for rows already read (`prefetch_related_objects`)."""
    active_assignments = CoachAssignment.objects.filter(end_date__isnull=True).select_related(
        "coach"
    )
    active_enrolments = (
        Enrolment.objects.filter(status=Enrolment.Status.ACTIVE)
        .select_related("program")
        .prefetch_related(Prefetch("assignments", queryset=active_assignments))
    )
    return Prefetch("enrolments", queryset=active_enrolments, to_attr="active_enrolments")


def with_current_care(qs: QuerySet[Patient]) -> QuerySet[Patient]:
    return qs.prefetch_related(current_care_prefetch())


def patient_list(*, user, query: str = "", status: str = "") -> QuerySet[Patient]:
    qs = search_patients(patients_visible_to(user), query)
    if status:
        qs = qs.filter(status=status)
    return with_current_care(qs).order_by("last_name", "first_name", "pk")


def patient_detail(*, user, public_id) -> Patient:
    patient = get_patient_for(user, public_id)
    assignments = CoachAssignment.objects.select_related("coach", "assigned_by").order_by(
        "end_date", "-start_date", "-id"
    )
    enrolments = (
        Enrolment.objects.select_related("program")
        .prefetch_related(Prefetch("assignments", queryset=assignments))
        .order_by("-start_date", "-id")
    )
    prefetched = (
        Patient.objects.filter(pk=patient.pk)
        .prefetch_related(
            Prefetch("enrolments", queryset=enrolments, to_attr="all_enrolments"),
            "status_changes__changed_by",
        )
        .get()
    )
    return prefetched


def enrolment_for(*, user, public_id, enrolment_id) -> Enrolment:
    """One of the patient's enrolments; 404 for anything else (another patient's, none)."""
    patient = get_patient_for(user, public_id)
    enrolment = (
        Enrolment.objects.select_related("patient", "program")
        .filter(pk=enrolment_id, patient=patient)
        .first()
    )
    if enrolment is None:
        raise Http404("No such enrolment.")
    return enrolment


def assignment_for(*, user, public_id, assignment_id) -> CoachAssignment:
    """One of the patient's coach assignments; 404 for anything else."""
    patient = get_patient_for(user, public_id)
    assignment = (
        CoachAssignment.objects.select_related("enrolment__patient", "coach")
        .filter(pk=assignment_id, enrolment__patient=patient)
        .first()
    )
    if assignment is None:
        raise Http404("No such assignment.")
    return assignment


def coaches() -> QuerySet:
    return (
        get_user_model()
        .objects.filter(is_active=True, groups__name=Role.COACH)
        .order_by("display_name")
    )


def programs_open_for_enrolment() -> QuerySet[Program]:
    return Program.objects.filter(is_active=True).order_by("name")


def audit_events_for(*, patient: Patient) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(patient=patient).select_related("actor")


def staff_for_admin():
    """Every member of staff but superusers (who are managed on the server), with roles."""
    return (
        get_user_model()
        .objects.filter(is_superuser=False)
        .prefetch_related("groups")
        .order_by("-is_active", "display_name")
    )
