"""Every page that shows a patient's record writes a VIEW audit row for that patient.

The pages are found by walking the URL patterns: any pattern that takes a patient, session,
response or flag id (or an enrolment or assignment id) is opened with the persona patient's real
ids, so a new page is checked the day it is added.
"""

import pytest
from django.test import Client
from django.urls import reverse

from clinic.models import AuditEvent
from tests.attack import catalogue
from tests.factories import EnrolmentFactory, PatientFactory

pytestmark = pytest.mark.django_db

# Patterns with a patient's id that are not opened here, and why.
EXEMPT = {
    "flag_acknowledge": "POST only, no page: acknowledging is a change and audited as one",
    "flag_resolve": "POST only: re-shows the flag page on a form error (tested below)",
}


def _views(patient, user) -> int:
    return AuditEvent.objects.filter(
        patient=patient, actor=user, action=AuditEvent.Action.VIEW
    ).count()


def test_every_page_of_a_patient_record_writes_one_view_row_per_request(world):
    bound = [p for p in catalogue.patterns() if p.patient_bound]
    assert len(bound) > 20  # the walk found the project's patient pages
    exercised, failures = set(), []
    for pattern in bound:
        if pattern.name in EXEMPT:
            continue
        url = catalogue.path_for(pattern, catalogue.real_values(pattern, world))
        # A clinician sees every patient; pages that only admins may use are opened by one.
        for user in (world.clinician, world.admin):
            client = Client()
            client.force_login(user)
            before = _views(world.patient, user)
            response = client.get(url)
            if response.status_code == 403:
                continue
            written = _views(world.patient, user) - before
            if response.status_code != 200 or written != 1:
                failures.append(f"{pattern.route}: {response.status_code}, {written} view row(s)")
            exercised.add(pattern.name)
            break
    assert not failures, "\n".join(failures)
    # Each pattern with a patient's id is opened above or exempt here, with its reason.
    assert exercised | set(EXEMPT) == {p.name for p in bound}


def test_a_flag_page_shown_again_with_a_form_error_is_audited(world, client_for):
    client = client_for(world.clinician)
    url = catalogue.path_for(catalogue.by_name("flag_resolve"), {"public_id": world.flag.public_id})
    response = client.post(url, {"note": ""})
    assert response.status_code == 200
    assert _views(world.patient, world.clinician) == 1


@pytest.mark.parametrize("page", ["home", "patient_list"])
def test_a_name_search_audits_each_patient_it_shows_and_not_the_words(world, client_for, page):
    PatientFactory(first_name="Unrelated", last_name="Person", status="in_treatment")
    world.patient.status = "in_treatment"
    world.patient.save()
    client = client_for(world.clinician)
    url = catalogue.path_for(catalogue.by_name(page), {})
    response = client.get(url, {"q": "Example"})
    assert response.status_code == 200 and "Pat" in response.content.decode()
    rows = AuditEvent.objects.filter(actor=world.clinician, action=AuditEvent.Action.VIEW)
    assert list(rows.values_list("patient", flat=True)) == [world.patient.pk]
    assert rows.get().detail == {"via": "search"}  # never the search words: they may be a name
    client.get(url)  # the list without a search is the user's caseload, not a look-up
    assert rows.count() == 1


def test_a_group_session_page_audits_every_attendee(world, client_for):
    from sessions.models import Attendance

    other = EnrolmentFactory(program=world.program).patient
    Attendance.objects.create(
        session=world.session, patient=other, enrolment=other.enrolments.get()
    )
    client = client_for(world.clinician)
    client.get(reverse("session_detail", args=[world.session.public_id]))
    viewed = AuditEvent.objects.filter(actor=world.clinician, action=AuditEvent.Action.VIEW)
    assert set(viewed.values_list("patient", flat=True)) == {world.patient.pk, other.pk}
