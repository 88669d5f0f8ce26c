"""Every state change is audited, and clinicians and admins can read a patient's trail."""

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from alliance.exports import export_csv
from clinic.models import AuditEvent
from sessions import services as session_services

pytestmark = pytest.mark.django_db


def test_the_audit_trail_page_is_for_clinicians_and_admins(people, client):
    url = reverse("patient_audit", args=[people.patient.public_id])
    client.force_login(people.clinician)
    client.get(reverse("patient_detail", args=[people.patient.public_id]))
    html = client.get(url).content.decode()
    assert "Audit trail" in html and "Cyd Clinician" in html and "Viewed" in html
    client.force_login(people.admin)
    assert client.get(url).status_code == 200
    client.force_login(people.coach)
    assert client.get(url).status_code == 403


def test_calendar_links_created_and_revoked_are_audited(people):
    session_services.feed_create(actor=people.coach)
    session_services.feed_create(actor=people.coach)  # the first is revoked
    session_services.feed_revoke(actor=people.coach)
    events = AuditEvent.objects.filter(
        object_type="clinic_sessions.calendarfeed", actor=people.coach
    )
    assert events.filter(action="create").count() == 2
    assert events.filter(action="update", detail__revoked=True).count() == 2


def test_an_export_is_audited_through_the_one_helper(people):
    export_csv(actor=people.clinician, patients=[people.patient], form="long")
    event = AuditEvent.objects.get(action="export")
    assert event.actor == people.clinician and event.detail["identified"] is False


def test_an_export_of_a_list_of_patients_holds_their_scores(people):
    from outcomes import services as outcome_services
    from tests.alliance.conftest import wai_answers

    outcome_services.response_record(
        actor=people.coach,
        patient=people.patient,
        version=outcome_services.latest_version("wai-sr"),
        answers=wai_answers(3),
        administered_at=timezone.now() - datetime.timedelta(days=1),
    )
    body = b"".join(export_csv(actor=people.clinician, patients=[people.patient], form="wide"))
    assert len(body.decode().splitlines()) == 2  # the header and the one time point
    assert AuditEvent.objects.get(action="export").detail["scores"] == 4
