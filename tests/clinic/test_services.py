import datetime

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from clinic import services
from clinic.models import (
    AuditEvent,
    CoachAssignment,
    Enrolment,
    Patient,
    PatientStatusChange,
)
from clinic.roles import Role
from tests.factories import (
    CoachAssignmentFactory,
    EnrolmentFactory,
    PatientFactory,
    ProgramFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def _patient_fields(**overrides):
    fields = {
        "record_number": "rp-0042",
        "first_name": " Ada ",
        "last_name": "Lovelace",
        "date_of_birth": datetime.date(1980, 12, 10),
        "email": "ADA@example.invalid",
    }
    fields.update(overrides)
    return fields


# --- patients -------------------------------------------------------------------------------


def test_patient_create_normalises_and_records_status_and_audit(people):
    patient = services.patient_create(actor=people.admin, **_patient_fields())
    assert patient.record_number == "RP-0042"
    assert patient.first_name == "Ada"
    assert patient.email == "ada@example.invalid"
    assert patient.status == Patient.Status.REFERRED
    assert patient.status_changes.get().to_status == Patient.Status.REFERRED
    event = AuditEvent.objects.get(action="create", patient=patient)
    assert event.actor == people.admin
    assert event.object_id == str(patient.public_id)


def test_duplicate_record_number_is_refused_whatever_the_case_and_writes_nothing(people):
    services.patient_create(actor=people.admin, **_patient_fields())
    before = (Patient.objects.count(), AuditEvent.objects.count())
    with pytest.raises(ValidationError) as exc:
        services.patient_create(
            actor=people.admin, **_patient_fields(record_number="RP-0042 ", first_name="Other")
        )
    assert "already has this record number" in str(exc.value.message_dict["record_number"])
    assert (Patient.objects.count(), AuditEvent.objects.count()) == before


def test_date_of_birth_in_the_future_is_refused(people):
    tomorrow = timezone.localdate() + datetime.timedelta(days=1)
    with pytest.raises(ValidationError) as exc:
        services.patient_create(actor=people.admin, **_patient_fields(date_of_birth=tomorrow))
    assert "future" in exc.value.message_dict["date_of_birth"][0]
    assert not Patient.objects.filter(record_number="RP-0042").exists()


def test_patient_update_audits_field_names_not_values(people):
    services.patient_update(actor=people.clinician, patient=people.patient, phone="0123 456")
    people.patient.refresh_from_db()
    assert people.patient.phone == "0123 456"
    event = AuditEvent.objects.get(action="update")
    assert event.detail == {"fields": ["phone"]}
    assert "0123" not in str(event.detail)


def test_patient_update_refuses_a_record_number_taken_by_another(people):
    other = PatientFactory(record_number="RP-TAKEN")
    with pytest.raises(ValidationError):
        services.patient_update(
            actor=people.admin, patient=people.patient, record_number="rp-taken"
        )
    people.patient.refresh_from_db()
    assert people.patient.record_number != other.record_number


def test_status_change_follows_the_lifecycle(people):
    patient = PatientFactory()
    services.patient_change_status(actor=people.admin, patient=patient, to_status="screening")
    patient.refresh_from_db()
    assert patient.status == "screening"
    change = PatientStatusChange.objects.get(patient=patient)
    assert (change.from_status, change.to_status, change.changed_by) == (
        "referred",
        "screening",
        people.admin,
    )


def test_impossible_status_transition_is_refused_and_writes_nothing(people):
    patient = PatientFactory()
    with pytest.raises(ValidationError) as exc:
        services.patient_change_status(actor=people.admin, patient=patient, to_status="completed")
    assert "cannot move to completed" in exc.value.message_dict["to_status"][0]
    patient.refresh_from_db()
    assert patient.status == "referred"
    assert not PatientStatusChange.objects.filter(patient=patient).exists()


def test_withdrawal_needs_a_reason_and_keeps_the_data(people):
    with pytest.raises(ValidationError) as exc:
        services.patient_change_status(
            actor=people.admin, patient=people.patient, to_status="withdrawn", reason="  "
        )
    assert "reason" in exc.value.message_dict
    services.patient_change_status(
        actor=people.admin, patient=people.patient, to_status="withdrawn", reason="Moved away"
    )
    people.patient.refresh_from_db()
    assert people.patient.withdrawal_reason == "Moved away"
    enrolment = Enrolment.objects.get(pk=people.enrolment.pk)
    assert enrolment.status == Enrolment.Status.WITHDRAWN
    assert enrolment.end_date == timezone.localdate()
    assert Patient.objects.filter(pk=people.patient.pk).exists()


# --- enrolment ------------------------------------------------------------------------------


def test_enrol_moves_a_referred_patient_to_enrolled_and_audits(people):
    patient = PatientFactory()
    program = ProgramFactory()
    enrolment = services.patient_enrol(
        actor=people.admin, patient=patient, program=program, start_date=timezone.localdate()
    )
    patient.refresh_from_db()
    assert enrolment.is_active and patient.status == Patient.Status.ENROLLED
    assert AuditEvent.objects.filter(action="enrol", patient=patient).count() == 1


def test_enrolling_twice_in_the_same_program_is_refused(people):
    with pytest.raises(ValidationError) as exc:
        services.patient_enrol(
            actor=people.admin,
            patient=people.patient,
            program=people.enrolment.program,
            start_date=timezone.localdate(),
        )
    assert "already enrolled" in exc.value.message_dict["program"][0]
    assert Enrolment.objects.filter(patient=people.patient).count() == 1


def test_enrolling_into_a_full_group_is_refused(people):
    group = ProgramFactory(kind="group", capacity=2)
    for _ in range(2):
        EnrolmentFactory(program=group)
    with pytest.raises(ValidationError) as exc:
        services.patient_enrol(
            actor=people.admin,
            patient=people.patient,
            program=group,
            start_date=timezone.localdate(),
        )
    assert "full (2 of 2" in exc.value.message_dict["program"][0]
    assert group.enrolments.count() == 2


def test_a_withdrawn_patient_cannot_be_enrolled(people):
    patient = PatientFactory(status="withdrawn", withdrawal_reason="Declined")
    with pytest.raises(ValidationError):
        services.patient_enrol(
            actor=people.admin,
            patient=patient,
            program=ProgramFactory(),
            start_date=timezone.localdate(),
        )


# --- coach assignment -----------------------------------------------------------------------


def test_assign_a_second_active_lead_is_refused(people):
    with pytest.raises(ValidationError) as exc:
        services.coach_assign(
            actor=people.admin,
            enrolment=people.enrolment,
            coach=people.other_coach,
            role=CoachAssignment.Role.LEAD,
        )
    assert "already has an active lead" in exc.value.message_dict["role"][0]
    assert people.enrolment.assignments.count() == 1


def test_assign_refuses_someone_who_is_not_a_coach(people):
    with pytest.raises(ValidationError) as exc:
        services.coach_assign(
            actor=people.admin,
            enrolment=people.enrolment,
            coach=people.clinician,
            role=CoachAssignment.Role.INTEGRATION,
        )
    assert "coach" in exc.value.message_dict


def test_assign_another_role_and_audit(people):
    assignment = services.coach_assign(
        actor=people.admin,
        enrolment=people.enrolment,
        coach=people.other_coach,
        role=CoachAssignment.Role.INTEGRATION,
    )
    assert assignment.is_active
    event = AuditEvent.objects.get(action="assign")
    assert event.patient == people.patient
    assert event.detail == {
        "coach": people.other_coach.pk,
        "role": "integration",
        "not_facilitating": [],
    }


@pytest.mark.shifted_clock
@pytest.mark.parametrize("how", ["assign", "reassign"])
def test_the_sessions_a_new_coach_cannot_facilitate_are_named_and_audited(people, clash, how):
    if how == "assign":
        assignment = services.coach_assign(
            actor=people.admin,
            enrolment=people.enrolment,
            coach=people.other_coach,
            role=CoachAssignment.Role.PREPARATION,
        )
    else:
        assignment = services.coach_reassign(
            actor=people.admin,
            assignment=people.enrolment.assignments.get(),
            new_coach=people.other_coach,
        )
    assert assignment.not_facilitating == [clash.clashing]
    assert list(clash.free.facilitators.all()) == [people.other_coach]
    assert people.other_coach not in clash.clashing.facilitators.all()
    event = AuditEvent.objects.get(action="assign")
    assert event.detail["not_facilitating"] == [str(clash.clashing.public_id)]


def test_reassign_ends_the_old_assignment_and_keeps_it(people):
    old = people.enrolment.assignments.get()
    start = timezone.localdate() + datetime.timedelta(days=3)
    new = services.coach_reassign(
        actor=people.admin, assignment=old, new_coach=people.other_coach, start_date=start
    )
    old.refresh_from_db()
    assert old.end_date == start and not old.is_active
    assert new.coach == people.other_coach and new.role == "lead" and new.is_active
    assert people.enrolment.assignments.count() == 2
    assert AuditEvent.objects.filter(action__in=["end_assignment", "assign"]).count() == 2


def test_reassign_to_the_same_coach_is_refused_and_changes_nothing(people):
    old = people.enrolment.assignments.get()
    with pytest.raises(ValidationError):
        services.coach_reassign(actor=people.admin, assignment=old, new_coach=people.coach)
    old.refresh_from_db()
    assert old.is_active and people.enrolment.assignments.count() == 1


def test_ending_an_assignment_before_it_started_is_refused(people):
    assignment = CoachAssignmentFactory(
        start_date=timezone.localdate(), role=CoachAssignment.Role.PREPARATION
    )
    with pytest.raises(ValidationError):
        services.assignment_end(
            actor=people.admin,
            assignment=assignment,
            end_date=timezone.localdate() - datetime.timedelta(days=1),
        )


def test_user_set_role_gives_exactly_one_role(db):
    user = UserFactory(role=Role.COACH)
    services.user_set_role(user=user, role=Role.CLINICIAN)
    assert [g.name for g in user.groups.all()] == ["clinician"]
