"""Constraints hold in the database itself, not only in forms and services."""

import datetime

import pytest
from django.db import IntegrityError

from clinic.models import CoachAssignment, Enrolment, Patient, Program
from tests.factories import (
    CoachAssignmentFactory,
    EnrolmentFactory,
    PatientFactory,
    ProgramFactory,
)

pytestmark = pytest.mark.django_db


def test_record_number_is_unique():
    PatientFactory(record_number="RP-1")
    with pytest.raises(IntegrityError):
        PatientFactory(record_number="RP-1")


def test_public_id_is_a_uuid_not_the_sequential_key():
    patient = PatientFactory()
    assert str(patient.public_id) != str(patient.pk)
    assert len(str(patient.public_id)) == 36


def test_withdrawn_patient_must_have_a_reason():
    with pytest.raises(IntegrityError):
        PatientFactory(status=Patient.Status.WITHDRAWN, withdrawal_reason="")


def test_group_program_needs_capacity():
    with pytest.raises(IntegrityError):
        ProgramFactory(kind=Program.Kind.GROUP, capacity=None)


def test_one_active_enrolment_per_patient_and_program():
    first = EnrolmentFactory()
    with pytest.raises(IntegrityError):
        EnrolmentFactory(patient=first.patient, program=first.program)


def test_a_finished_enrolment_does_not_block_a_new_one():
    first = EnrolmentFactory(status=Enrolment.Status.COMPLETED)
    again = EnrolmentFactory(patient=first.patient, program=first.program)
    assert again.is_active


def test_at_most_one_active_lead_per_enrolment():
    lead = CoachAssignmentFactory(role=CoachAssignment.Role.LEAD)
    with pytest.raises(IntegrityError):
        CoachAssignmentFactory(enrolment=lead.enrolment, role=CoachAssignment.Role.LEAD)


def test_an_ended_lead_is_history_and_a_new_lead_may_start():
    lead = CoachAssignmentFactory(role=CoachAssignment.Role.LEAD)
    lead.end_date = lead.start_date
    lead.save()
    new = CoachAssignmentFactory(enrolment=lead.enrolment, role=CoachAssignment.Role.LEAD)
    assert CoachAssignment.objects.filter(enrolment=lead.enrolment).count() == 2
    assert new.is_active and not CoachAssignment.objects.get(pk=lead.pk).is_active


def test_assignment_cannot_end_before_it_starts():
    assignment = CoachAssignmentFactory()
    assignment.end_date = assignment.start_date - datetime.timedelta(days=1)
    with pytest.raises(IntegrityError):
        assignment.save()


def test_status_lifecycle_moves_forward_or_to_withdrawn():
    patient = PatientFactory(status=Patient.Status.SCREENING)
    assert patient.allowed_next_statuses() == [Patient.Status.ENROLLED, Patient.Status.WITHDRAWN]
    patient.status = Patient.Status.COMPLETED
    assert patient.allowed_next_statuses() == []
