"""The program page pages through its members: a program of thousands costs what a small
one does, on any page."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from clinic.pages import PAGE_SIZE
from tests.factories import EnrolmentFactory, PatientFactory

pytestmark = pytest.mark.django_db


def _enrol(program, count, *, start=0):
    for n in range(start, start + count):
        EnrolmentFactory(program=program, patient=PatientFactory(last_name=f"Member{n:03d}"))


def _page(client, program, number=1):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("program_sessions", args=[program.pk]), {"page": number})
    assert response.status_code == 200
    return response.content.decode(), len(queries.captured_queries)


def _names_on(html) -> list[str]:
    """The numbers of the members linked on the page, in the order shown."""
    return re.findall(r">[^<>]* Member(\d{3})</a>", html)


def test_the_program_page_does_not_grow_with_its_members(client, people):
    program = people.enrolment.program
    client.force_login(people.clinician)
    _enrol(program, 2)
    _html, small = _page(client, program)
    _enrol(program, 6, start=2)
    html, larger = _page(client, program)
    assert larger == small
    assert _names_on(html) == [f"{n:03d}" for n in range(8)]


def test_the_last_page_costs_what_the_first_does_and_together_they_list_everyone(client, people):
    program = people.enrolment.program
    client.force_login(people.clinician)
    _enrol(program, PAGE_SIZE + 2)
    first, first_queries = _page(client, program, 1)
    last, last_queries = _page(client, program, 2)
    assert last_queries == first_queries
    assert f"{PAGE_SIZE + 3} members" in first  # the count is of the program, not the page
    assert "Page 1 of 2" in first and "?page=2" in first and "?page=1" not in first
    assert "Page 2 of 2" in last and "?page=1" in last and "?page=2" not in last
    listed = _names_on(first) + _names_on(last)
    # Everyone once, in name order; the patient from the fixture ("Example") comes first.
    assert listed == [f"{n:03d}" for n in range(PAGE_SIZE + 2)]
    assert people.patient.full_name in first and people.patient.full_name not in last
