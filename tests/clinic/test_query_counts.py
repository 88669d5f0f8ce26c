"""Pages run a constant number of queries however many patients there are."""

import io

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from clinic import services
from clinic.models import Patient, User

pytestmark = pytest.mark.django_db


def _queries(client, url) -> int:
    # Counted from an empty cache each time, the clinic's bond percentiles included, so a
    # page that reads a cached value is compared with itself reading it fresh.
    cache.clear()
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_list_pages_do_not_grow_with_the_caseload(client):
    pages = [reverse("home"), reverse("patient_list")]
    call_command("seed_demo", patients=4, alumni=1, seed=1, stdout=io.StringIO())
    clinician = User.objects.get(email="clinician1@rapport.test")
    client.force_login(clinician)
    small = [_queries(client, url) for url in pages]
    call_command("seed_demo", patients=12, alumni=3, seed=1, stdout=io.StringIO())
    assert [_queries(client, url) for url in pages] == small


def test_patient_page_does_not_grow_with_history(client, people):
    url = reverse("patient_detail", args=[people.patient.public_id])
    client.force_login(people.admin)
    # One row of each kind of history first: nested prefetches only run when there are rows.
    services.patient_change_status(
        actor=people.admin, patient=people.patient, to_status="screening"
    )
    small = _queries(client, url)

    for _ in range(5):  # more coach history and status changes
        assignment = people.enrolment.assignments.filter(end_date__isnull=True).get()
        services.coach_reassign(
            actor=people.admin,
            assignment=assignment,
            new_coach=people.other_coach if assignment.coach == people.coach else people.coach,
        )
    services.patient_change_status(actor=people.admin, patient=people.patient, to_status="enrolled")
    assert Patient.objects.get(pk=people.patient.pk).status_changes.count() == 2
    assert _queries(client, url) == small
