import datetime
import re

import pytest
from django.core import mail
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from clinic.models import AuditEvent
from outcomes import links
from outcomes.models import Response, SelfReportLink

pytestmark = pytest.mark.django_db

SRS = {"srs-item_1": "8.5", "srs-item_2": "9", "srs-item_3": "9.5", "srs-item_4": "9"}


@pytest.fixture(autouse=True)
def _fresh_guess_counter():
    cache.clear()
    yield
    cache.clear()


def _link(people, **extra):
    return links.link_create(
        actor=people.coach, patient=people.patient, instruments=["srs"], **extra
    )


def _path(token):
    return reverse("link_answer", args=[token])


def test_only_the_hash_of_the_token_is_stored_and_creation_is_audited(people):
    link, token = _link(people)
    assert token not in link.token_hash and len(token) >= 40
    assert link.token_hash == SelfReportLink.hash_token(token)
    assert link.expires_at - link.created_at == pytest.approx(
        datetime.timedelta(hours=72), abs=datetime.timedelta(seconds=5)
    )
    assert AuditEvent.objects.filter(object_type="outcomes.selfreportlink", action="create")


def test_the_page_shows_only_the_first_name_and_the_crisis_note(client, people):
    _, token = _link(people)
    html = client.get(_path(token)).content.decode()
    assert f"Hello {people.patient.first_name}" in html
    assert people.patient.last_name not in html and people.patient.record_number not in html
    assert "not watched in real time" in html
    assert "If you are in crisis" in html


def test_answering_once_records_the_response_and_the_link_cannot_be_replayed(client, people):
    _, token = _link(people)
    thanks = client.post(_path(token), SRS)
    assert "Thank you" in thanks.content.decode()
    response = Response.objects.get()
    assert response.source == "link" and response.entered_by is None
    assert response.scores.get(scale="total").value == 36.0
    again = client.post(_path(token), SRS)
    assert again.status_code == 410
    assert "already been answered" in again.content.decode()
    assert Response.objects.count() == 1
    assert AuditEvent.objects.filter(
        object_type="outcomes.selfreportlink", action="update", actor=None
    ).exists()


def test_bad_answers_keep_the_link_open_and_what_was_typed(client, people):
    _, token = _link(people)
    page = client.post(_path(token), {**SRS, "srs-item_2": "12"})
    assert page.status_code == 200 and 'value="8.5"' in page.content.decode()
    assert Response.objects.count() == 0
    assert SelfReportLink.objects.get().used_at is None


def test_an_expired_link_shows_a_clear_page(client, people):
    link, token = _link(people)
    SelfReportLink.objects.filter(pk=link.pk).update(expires_at=timezone.now())
    response = client.get(_path(token))
    assert response.status_code == 410 and "expired" in response.content.decode()


def test_a_tampered_token_is_not_found_and_guessing_is_rate_limited(client, people):
    _, token = _link(people)
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    for _ in range(10):
        assert client.get(_path(tampered)).status_code == 404
    assert client.get(_path(tampered)).status_code == 429
    assert client.get(_path(token)).status_code == 429  # the limit is per client


def test_staff_create_a_link_and_see_it_once(client, people):
    client.force_login(people.coach)
    page = client.post(
        reverse("link_new", args=[people.patient.public_id]), {"instruments": ["srs"], "hours": 24}
    ).content.decode()
    url = re.search(r'value="(http[^"]+/q/[^"]+/)"', page).group(1)
    assert SelfReportLink.objects.get().token_hash == SelfReportLink.hash_token(
        url.rstrip("/").rsplit("/", 1)[1]
    )
    client.force_login(people.other_coach)
    assert client.get(reverse("link_new", args=[people.patient.public_id])).status_code == 404


def test_a_clinician_rated_scale_cannot_go_to_the_patient(people):
    with pytest.raises(Exception, match="not patient-rated"):
        links.link_create(actor=people.coach, patient=people.patient, instruments=["grid-hamd-17"])


# --- e-mail delivery -----------------------------------------------------------------------


def test_due_measures_are_mailed_once_with_a_working_link(client, people, completed_session):
    assert links.send_due_links() == 1
    assert links.send_due_links() == 0  # a live link exists: nothing more
    (message,) = mail.outbox
    assert message.to == [people.patient.email]
    assert people.patient.last_name not in message.body
    url = re.search(r"http\S+/q/\S+/", message.body).group(0)
    assert client.get(url.replace("http://127.0.0.1:8000", "")).status_code == 200


def test_no_mail_without_consent(people, completed_session):
    people.patient.email_consent = False
    people.patient.save()
    assert links.send_due_links() == 0 and not mail.outbox


def test_reminders_come_daily_at_most_three_times_and_stop_once_answered(
    client, people, completed_session
):
    links.send_due_links()
    link = SelfReportLink.objects.get()
    now = timezone.now()
    assert links.send_reminders(now=now) == 0  # not a day yet
    sent = 0
    for _day in range(5):
        SelfReportLink.objects.filter(pk=link.pk).update(
            last_sent_at=now - datetime.timedelta(hours=25),
            expires_at=now + datetime.timedelta(days=9),
        )
        sent += links.send_reminders(now=now)
    assert sent == 3 and SelfReportLink.objects.get().reminders_sent == 3
    # The newest reminder's link works; answering stops everything.
    url = re.search(r"http\S+/q/\S+/", mail.outbox[-1].body).group(0)
    path = url.replace("http://127.0.0.1:8000", "")
    wai = {f"wai-sr-item_{n}": "4" for n in range(1, 13)}
    answered = client.post(path, {**wai, **SRS})
    assert "Thank you" in answered.content.decode()
    SelfReportLink.objects.filter(pk=link.pk).update(reminders_sent=0)
    SelfReportLink.objects.filter(pk=link.pk).update(
        last_sent_at=now - datetime.timedelta(hours=25)
    )
    assert links.send_reminders(now=now) == 0
