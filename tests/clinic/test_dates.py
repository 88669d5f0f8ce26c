"""Dates of birth, enrolments and assignments outside a plausible window are refused."""

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from clinic import services
from clinic.models import Enrolment, Patient
from tests.factories import ProgramFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "born, message",
    [
        ("1899-12-31", "before 1900"),
        ("0001-01-01", "before 1900"),
        ((timezone.localdate() + datetime.timedelta(days=1)).isoformat(), "in the future"),
    ],
)
def test_the_patient_form_refuses_an_implausible_date_of_birth(people, client_for, born, message):
    response = client_for(people.clinician).post(
        reverse("patient_create"),
        {
            "record_number": "RP-9",
            "first_name": "Al",
            "last_name": "Ng",
            "date_of_birth": born,
        },
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Patient.objects.filter(record_number="RP-9").exists()


@pytest.mark.parametrize(
    "start, message",
    [
        (datetime.date(1999, 12, 31), "cannot be before 2000"),
        (datetime.date(9999, 12, 31), "more than 5 years ahead"),
    ],
)
def test_an_enrolment_cannot_start_at_an_implausible_date(people, start, message):
    with pytest.raises(ValidationError, match=message):
        services.patient_enrol(
            actor=people.admin, patient=people.patient, program=ProgramFactory(), start_date=start
        )
    assert Enrolment.objects.count() == 1  # the persona's own


def test_the_enrol_form_shows_the_message(people, client_for):
    program = ProgramFactory()
    response = client_for(people.admin).post(
        reverse("patient_enrol", args=[people.patient.public_id]),
        {"program": program.pk, "start_date": "0001-01-01"},
    )
    assert "cannot be before 2000" in response.content.decode()
    assert not program.enrolments.exists()


def test_an_assignment_cannot_end_at_an_implausible_date(people):
    assignment = people.enrolment.assignments.get()
    with pytest.raises(ValidationError, match="more than 5 years ahead"):
        services.assignment_end(
            actor=people.admin, assignment=assignment, end_date=datetime.date(3026, 1, 1)
        )
    assignment.refresh_from_db()
    assert assignment.end_date is None
