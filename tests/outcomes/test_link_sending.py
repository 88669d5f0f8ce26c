"""Sending a questionnaire link from the staff page: created and shown (copy, QR) unless
staff tick e-mail, which goes only to a patient who agreed, at once, audited, and leaves no
link behind when the mail server refuses it."""

import re

import pytest
from django.core import mail
from django.urls import reverse

from clinic.models import AuditEvent
from outcomes import links
from outcomes.models import SelfReportLink

pytestmark = pytest.mark.django_db


def _agree(patient):
    patient.email_consent = True
    patient.save()


def _post(client, patient, **extra):
    return client.post(
        reverse("link_new", args=[patient.public_id]),
        {"instruments": ["srs", "wai-sr"], "hours": 72, **extra},
    )


@pytest.mark.shifted_clock
def test_a_link_is_emailed_now_to_a_patient_who_agreed(client_for, people):
    _agree(people.patient)
    client = client_for(people.coach)
    form = client.get(reverse("link_new", args=[people.patient.public_id])).content.decode()
    assert "<title>Create a questionnaire link" in form
    assert f"Also e-mail it to them now ({people.patient.email})" in form
    page = _post(client, people.patient, send_by_email="on").content.decode()
    assert "<title>Link sent by e-mail" in page and "Nothing has been sent" not in page
    (message,) = mail.outbox
    assert message.to == [people.patient.email]
    emailed = re.search(r"http\S+/q/(\S+)/", message.body)[1]
    shown = re.search(r'value="http[^"]+/q/([^"]+)/"', page)[1]
    link = SelfReportLink.objects.get()
    assert emailed == shown and link.token_hash == SelfReportLink.hash_token(emailed)
    assert link.by_email and link.sent_at is not None  # the daily reminders follow it
    actions = AuditEvent.objects.filter(object_id=str(link.pk), actor=people.coach)
    assert sorted(actions.values_list("action", flat=True)) == ["create", "update"]
    assert actions.get(action="update").detail == {"link": "e-mailed"}


@pytest.mark.shifted_clock
def test_without_agreement_e_mail_is_not_offered_and_nothing_is_sent(client_for, people):
    client = client_for(people.coach)
    form = client.get(reverse("link_new", args=[people.patient.public_id])).content.decode()
    assert "send_by_email" not in form
    page = _post(client, people.patient, send_by_email="on").content.decode()
    assert "<title>Link created" in page and "Nothing has been sent yet" in page
    assert mail.outbox == []
    assert not SelfReportLink.objects.get().by_email


@pytest.mark.shifted_clock
def test_a_refused_e_mail_leaves_no_link_and_says_so(client_for, people, monkeypatch):
    _agree(people.patient)

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("mail server down")

    monkeypatch.setattr(links, "send_mail", refuse)
    response = _post(client_for(people.coach), people.patient, send_by_email="on")
    page = response.content.decode()
    assert response.status_code == 200 and "The e-mail could not be sent" in page
    # What was chosen is still chosen.
    assert re.search(r'<input[^>]*value="srs"[^>]*checked', page)
    assert re.search(r'<input[^>]*name="send_by_email"[^>]*checked', page)
    assert not SelfReportLink.objects.exists()
    assert not AuditEvent.objects.filter(object_type="outcomes.selfreportlink").exists()


@pytest.mark.shifted_clock
def test_a_session_gets_one_e_mailed_link_however_often_it_is_sent(people, completed_session):
    links.link_email_now(
        actor=people.coach, patient=people.patient, instruments=["srs"], session=completed_session
    )
    with pytest.raises(Exception, match="already e-mailed"):
        links.link_email_now(
            actor=people.coach,
            patient=people.patient,
            instruments=["srs"],
            session=completed_session,
        )
    assert SelfReportLink.objects.filter(session=completed_session).count() == 1
    assert len(mail.outbox) == 1
    assert links.send_due_links() == 0  # the hourly job sends no second one
