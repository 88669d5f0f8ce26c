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


# --- the caseload -------------------------------------------------------------------------


def _caseload(client, number=1):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("home"), {"page": number})
    assert response.status_code == 200
    return response.content.decode(), len(queries.captured_queries)


def _in_care(count, *, start=0, program=None):
    for n in range(start, start + count):
        EnrolmentFactory(
            patient=PatientFactory(last_name=f"Member{n:03d}"),
            **({"program": program} if program else {}),
        )


def test_the_caseload_does_not_grow_with_the_patients_in_care(client, people):
    client.force_login(people.clinician)
    _in_care(2)
    _html, small = _caseload(client)
    _in_care(6, start=2)
    html, larger = _caseload(client)
    assert larger == small
    assert _names_on(html) == [f"{n:03d}" for n in range(8)]


def test_the_caseloads_last_page_costs_what_the_first_does(client, people):
    client.force_login(people.clinician)
    _in_care(PAGE_SIZE + 2)
    first, first_queries = _caseload(client, 1)
    last, last_queries = _caseload(client, 2)
    assert last_queries == first_queries
    assert "Page 1 of 2" in first and "?page=2" in first
    assert "Page 2 of 2" in last and "?page=1" in last
    assert _names_on(first) + _names_on(last) == [f"{n:03d}" for n in range(PAGE_SIZE + 2)]


@pytest.mark.shifted_clock
def test_open_flags_then_the_nearest_dosing_lead_and_the_order_follows_changes(
    client, people, rate, dosing_in
):
    from alliance import services
    from alliance.models import Flag
    from tests.helpers import book_session

    _in_care(3)
    soon = EnrolmentFactory(patient=PatientFactory(last_name="Member900"))
    dosing_in(3)
    rate(bond=2)  # weak bond before Pat's dosing in three days
    services.recompute_patient(patient_id=people.patient.pk)
    client.force_login(people.clinician)
    html, _ = _caseload(client)
    assert html.index(people.patient.full_name) < html.index("Member000")
    assert _names_on(html) == ["000", "001", "002", "900"]

    # Booking a dosing (the schedule_changed signal) moves a patient up at once.
    book_session(soon, actor=people.admin, kind="dosing", hours_from_now=48, minutes=6 * 60)
    html, _ = _caseload(client)
    assert _names_on(html) == ["900", "000", "001", "002"]
    assert html.index(people.patient.full_name) < html.index("Member900")  # flags first

    # Resolving the flags: Pat is ordered by the dosing in three days, after the one in two.
    flags = Flag.objects.filter(patient=people.patient, status__in=Flag.UNRESOLVED)
    assert "weak_bond" in {f.kind for f in flags}
    for flag in flags:
        services.flag_resolve(actor=people.clinician, flag=flag, note="Extra preparation booked")
    html, _ = _caseload(client)
    assert html.index("Member900") < html.index(people.patient.full_name)
    assert html.index(people.patient.full_name) < html.index("Member000")
