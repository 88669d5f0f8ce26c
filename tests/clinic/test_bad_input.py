"""Input an outside attack test sent: answered with 404 or a form error, never 500, and never
telling a user which ids exist."""

import pytest
from django.test import Client
from django.urls import reverse

from tests.attack.catalogue import normalised_body
from tests.factories import CoachAssignmentFactory, EnrolmentFactory

pytestmark = pytest.mark.django_db

NO_SUCH_ID = 2_000_000_000


@pytest.fixture
def others(people):
    """Another patient's enrolment and coach assignment: real ids, not the persona's."""
    enrolment = EnrolmentFactory(enrolled_by=people.admin)
    assignment = CoachAssignmentFactory(enrolment=enrolment, assigned_by=people.admin)
    return enrolment, assignment


def _pages(people, enrolment_id, assignment_id):
    patient = people.patient.public_id
    return [
        reverse("assignment_create", args=[patient, enrolment_id]),
        reverse("assignment_reassign", args=[patient, assignment_id]),
        reverse("assignment_end", args=[patient, assignment_id]),
    ]


@pytest.mark.parametrize("method", ["get", "post"])
def test_another_patients_enrolment_or_assignment_is_the_same_404_as_none(people, others, method):
    client = Client(raise_request_exception=False)
    client.force_login(people.admin)
    enrolment, assignment = others
    crossed = _pages(people, enrolment.pk, assignment.pk)
    absent = _pages(people, NO_SUCH_ID, NO_SUCH_ID)
    for theirs, none in zip(crossed, absent, strict=True):
        answer, missing = getattr(client, method)(theirs), getattr(client, method)(none)
        assert answer.status_code == missing.status_code == 404, theirs
        assert normalised_body(answer) == normalised_body(missing)


def test_a_coach_learns_nothing_about_which_enrolment_ids_exist(people, others, client_for):
    client = client_for(people.coach)
    enrolment, assignment = others
    crossed = _pages(people, enrolment.pk, assignment.pk)
    absent = _pages(people, NO_SUCH_ID, NO_SUCH_ID)
    for theirs, none in zip(crossed, absent, strict=True):
        assert normalised_body(client.get(theirs)) == normalised_body(client.get(none))
        assert client.get(theirs).status_code == 404


@pytest.mark.parametrize("page", ["home", "patient_list"])
@pytest.mark.parametrize(
    "query, message",
    [
        ("\x00", "Null characters are not allowed."),
        ("Ex\x00ample", "Null characters are not allowed."),
        ("a" * 10_000, "at most 100 characters"),
        ("x " * 5_000, "at most 100 characters"),
    ],
    ids=["nul", "nul-inside", "10000-characters", "5000-words"],
)
def test_a_search_that_cannot_be_a_name_is_a_form_error(people, client_for, page, query, message):
    response = client_for(people.clinician).get(reverse(page), {"q": query})
    assert response.status_code == 200
    html = response.content.decode()
    assert message in html
    assert "Pat Example" not in html  # no results for a search that was refused


def test_a_search_still_finds_by_name_and_record_number(people, client_for):
    people.patient.status = "in_treatment"
    people.patient.save()
    client = client_for(people.clinician)
    assert "Example" in client.get(reverse("patient_list"), {"q": "  exam  "}).content.decode()
    record = people.patient.record_number
    assert "Example" in client.get(reverse("home"), {"q": record}).content.decode()
