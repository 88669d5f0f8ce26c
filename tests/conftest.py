"""Named personas, set up the same way for every test that needs them."""

from types import SimpleNamespace

import pytest

from clinic.roles import Role

from .factories import CoachAssignmentFactory, EnrolmentFactory, PatientFactory, UserFactory


@pytest.fixture
def people(db):
    """A patient with a coach, another coach without them, a clinician and an admin."""
    admin = UserFactory(role=Role.ADMIN, display_name="Ada Admin", is_staff=True)
    patient = PatientFactory(first_name="Pat", last_name="Example")
    enrolment = EnrolmentFactory(patient=patient, enrolled_by=admin)
    coach = UserFactory(role=Role.COACH, display_name="Cora Coach")
    CoachAssignmentFactory(enrolment=enrolment, coach=coach, assigned_by=admin)
    return SimpleNamespace(
        admin=admin,
        clinician=UserFactory(role=Role.CLINICIAN, display_name="Cyd Clinician"),
        coach=coach,
        other_coach=UserFactory(role=Role.COACH, display_name="Otto Othercoach"),
        patient=patient,
        enrolment=enrolment,
    )


@pytest.fixture
def client_for(client):
    """Log the test client in as a persona: `client_for(people.coach)`."""

    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture
def world(people):
    """The personas, and the persona patient with one of every record a URL can name."""
    from .attack.catalogue import build_world

    return build_world(people)
