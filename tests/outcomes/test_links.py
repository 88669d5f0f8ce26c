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
    return reverse("link_open", args=[token])


ANSWER = "/q/answer/"


def _open(client, token, **extra):
    """Open an e-mailed link as a browser does: the token is exchanged, then redirected."""
    return client.get(_path(token), follow=True, **extra)


def _answer(client, token, data):
    """Open the link, then send the answers to the token-free page."""
    _open(client, token)
    return client.post(ANSWER, data)


def test_only_the_hash_of_the_token_is_stored_and_creation_is_audited(people):
    link, token = _link(people)
    assert token not in link.token_hash and len(token) >= 40
    assert link.token_hash == SelfReportLink.hash_token(token)
    # Three reminders a day apart, then a day to answer the last one.
    assert link.expires_at - link.created_at == pytest.approx(
        datetime.timedelta(hours=96), abs=datetime.timedelta(seconds=5)
    )
    quiet, _ = _link(people, reminders=0)
    assert quiet.expires_at - quiet.created_at == pytest.approx(
        datetime.timedelta(hours=72), abs=datetime.timedelta(seconds=5)
    )
    assert AuditEvent.objects.filter(object_type="outcomes.selfreportlink", action="create")


def test_the_page_shows_only_the_first_name_and_the_crisis_note(client, people):
    _, token = _link(people)
    html = _open(client, token).content.decode()
    assert f"Hello {people.patient.first_name}" in html
    assert people.patient.last_name not in html and people.patient.record_number not in html
    assert "not watched in real time" in html
    assert "If you are in crisis" in html


def test_answering_once_records_the_response_and_the_link_cannot_be_replayed(client, people):
    _, token = _link(people)
    thanks = _answer(client, token, SRS)
    assert "Thank you" in thanks.content.decode()
    response = Response.objects.get()
    assert response.source == "link" and response.entered_by is None
    assert response.scores.get(scale="total").value == 36.0
    again = client.post(ANSWER, SRS)
    assert again.status_code == 410
    assert "already been answered" in again.content.decode()
    reopened = client.get(_path(token))
    assert reopened.status_code == 410 and "already been answered" in reopened.content.decode()
    assert Response.objects.count() == 1
    assert AuditEvent.objects.filter(
        object_type="outcomes.selfreportlink", action="update", actor=None
    ).exists()


def test_bad_answers_keep_the_link_open_and_what_was_typed(client, people):
    _, token = _link(people)
    page = _answer(client, token, {**SRS, "srs-item_2": "12"})
    assert page.status_code == 200 and 'value="8.5"' in page.content.decode()
    assert Response.objects.count() == 0
    assert SelfReportLink.objects.get().used_at is None


@pytest.mark.shifted_clock
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
    # The limit is per client and token prefix: completing a partly known token is stopped.
    assert client.get(_path(token)).status_code == 429


def test_staff_create_a_link_and_see_it_once(client, people):
    client.force_login(people.coach)
    page = client.post(
        reverse("link_new", args=[people.patient.public_id]), {"instruments": ["srs"], "hours": 24}
    ).content.decode()
    url = re.search(r'value="(http[^"]+/q/[^"]+/)"', page).group(1)
    assert SelfReportLink.objects.get().token_hash == SelfReportLink.hash_token(
        url.rstrip("/").rsplit("/", 1)[1]
    )
    # Nothing is sent: the page says so, and offers a copy button and a QR code of the link.
    assert "Nothing has been sent yet" in page
    assert "data-copy=" in page
    assert 'src="data:image/svg+xml;base64,' in page
    client.force_login(people.other_coach)
    assert client.get(reverse("link_new", args=[people.patient.public_id])).status_code == 404


def test_a_clinician_rated_scale_cannot_go_to_the_patient(people):
    with pytest.raises(Exception, match="not patient-rated"):
        links.link_create(actor=people.coach, patient=people.patient, instruments=["grid-hamd-17"])


# --- e-mail delivery -----------------------------------------------------------------------


@pytest.mark.shifted_clock
def test_due_measures_are_mailed_once_with_a_working_link(client, people, completed_session):
    assert links.send_due_links() == 1
    assert links.send_due_links() == 0  # a live link exists: nothing more
    (message,) = mail.outbox
    assert message.to == [people.patient.email]
    assert people.patient.last_name not in message.body
    url = re.search(r"http\S+/q/\S+/", message.body).group(0)
    opened = client.get(url.replace("http://127.0.0.1:8000", ""), follow=True)
    assert opened.status_code == 200 and "Hello" in opened.content.decode()


def test_no_mail_without_consent(people, completed_session):
    people.patient.email_consent = False
    people.patient.save()
    assert links.send_due_links() == 0 and not mail.outbox


@pytest.mark.shifted_clock
def test_reminders_come_daily_at_most_three_times_and_stop_once_answered(
    client, people, completed_session
):
    import time_machine

    sent_at = timezone.now().replace(microsecond=0)
    with time_machine.travel(sent_at, tick=False) as traveller:
        links.send_due_links()
        link = SelfReportLink.objects.get()
        assert links.send_reminders() == 0  # not a day yet
        sent = []
        # Beat's hourly runs over five days, with the link's real life (no moved expiry).
        for hour in range(1, 5 * 24):
            traveller.move_to(sent_at + datetime.timedelta(hours=hour))
            if links.send_reminders():
                sent.append(hour)
        assert sent == [24, 48, 72] and SelfReportLink.objects.get().reminders_sent == 3
        link.refresh_from_db()
        assert link.expires_at >= sent_at + datetime.timedelta(hours=72 + 24)
    # The newest reminder's link works until the link expires; answering stops everything.
    with time_machine.travel(sent_at + datetime.timedelta(hours=80), tick=False):
        url = re.search(r"http\S+/q/\S+/", mail.outbox[-1].body).group(0)
        path = url.replace("http://127.0.0.1:8000", "")
        wai = {f"wai-sr-item_{n}": "4" for n in range(1, 13)}
        client.get(path)
        answered = client.post(ANSWER, {**wai, **SRS})
        assert "Thank you" in answered.content.decode()
        SelfReportLink.objects.filter(pk=link.pk).update(reminders_sent=0)
        assert links.send_reminders() == 0


# --- more of the lifecycle -----------------------------------------------------------------


def test_guesses_are_counted_in_the_database_by_a_hash_of_the_address(client, people):
    from outcomes.models import LinkGuess

    client.get(_path("not-a-token"), REMOTE_ADDR="203.0.113.7")
    guess = LinkGuess.objects.get()
    assert "203.0.113.7" not in guess.client and len(guess.client) == 64
    # Another address has its own allowance.
    for _ in range(10):
        client.get(_path("not-a-token"), REMOTE_ADDR="203.0.113.8")
    assert client.get(_path("not-a-token"), REMOTE_ADDR="203.0.113.8").status_code == 429
    assert client.get(_path("not-a-token"), REMOTE_ADDR="203.0.113.7").status_code == 404


@pytest.mark.shifted_clock
def test_old_guesses_stop_counting_after_the_window(client, people):
    from outcomes.models import LinkGuess

    for _ in range(10):
        client.get(_path("not-a-token"))
    assert client.get(_path("not-a-token")).status_code == 429
    LinkGuess.objects.update(at=timezone.now() - datetime.timedelta(minutes=11))
    assert client.get(_path("not-a-token")).status_code == 404
    LinkGuess.objects.update(at=timezone.now() - datetime.timedelta(days=2))
    assert links.forget_old_guesses() == 11


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(client, people, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    for _ in range(10):
        client.get(_path("x"), HTTP_X_FORWARDED_FOR="198.51.100.1", **proxy)
    assert client.get(_path("x"), HTTP_X_FORWARDED_FOR="198.51.100.1", **proxy).status_code == 429
    # Another patient behind the same proxy is not blocked; a spoofed first hop does not help.
    assert client.get(_path("x"), HTTP_X_FORWARDED_FOR="198.51.100.2", **proxy).status_code == 404
    spoofed = "198.51.100.9, 198.51.100.1"
    assert client.get(_path("x"), HTTP_X_FORWARDED_FOR=spoofed, **proxy).status_code == 429


def test_a_used_link_is_refused_before_anything_is_shown(client, people):
    _, token = _link(people)
    _answer(client, token, SRS)
    page = client.get(_path(token))
    assert page.status_code == 410 and "Hello" not in page.content.decode()


@pytest.mark.shifted_clock
def test_answers_sent_just_after_expiry_are_taken_later_ones_are_not(client, people):
    link, token = _link(people)
    _open(client, token)
    SelfReportLink.objects.filter(pk=link.pk).update(
        expires_at=timezone.now() - datetime.timedelta(minutes=20)
    )
    assert client.get(_path(token)).status_code == 410  # no new visits
    assert "Thank you" in client.post(ANSWER, SRS).content.decode()  # within the grace
    assert Response.objects.count() == 1
    link, token = _link(people)
    _open(client, token)
    SelfReportLink.objects.filter(pk=link.pk).update(
        expires_at=timezone.now() - links.SUBMIT_GRACE - datetime.timedelta(seconds=1)
    )
    refused = client.post(ANSWER, SRS)
    assert refused.status_code == 410 and "expired" in refused.content.decode()
    assert Response.objects.count() == 1


def test_a_patient_who_leaves_too_much_blank_is_told_in_plain_words(client, people):
    _, token = _link(people)
    page = _answer(client, token, {"srs-item_1": "8"})
    html = page.content.decode()
    assert page.status_code == 200 and "Please answer more of these questions" in html
    assert "save incomplete" not in html  # staff wording stays on staff pages
    assert Response.objects.count() == 0 and SelfReportLink.objects.get().used_at is None


def test_several_questionnaires_are_saved_together_or_not_at_all(client, people):
    link, token = links.link_create(
        actor=people.coach, patient=people.patient, instruments=["wai-sr", "srs"]
    )
    wai = {f"wai-sr-item_{n}": "4" for n in range(1, 13)}
    page = _answer(client, token, {**wai, **SRS, "srs-item_4": "11"})
    assert page.status_code == 200 and Response.objects.count() == 0
    assert 'value="8.5"' in page.content.decode()
    client.post(ANSWER, {**wai, **SRS})
    assert sorted(Response.objects.values_list("version__instrument__code", flat=True)) == [
        "srs",
        "wai-sr",
    ]


@pytest.mark.shifted_clock
def test_a_link_for_a_session_skips_what_the_clinic_entered_meanwhile(
    client, people, completed_session
):
    from outcomes import services

    link, token = links.link_create(
        actor=people.coach,
        patient=people.patient,
        instruments=["wai-sr", "srs"],
        session=completed_session,
    )
    services.response_record(
        actor=people.coach,
        patient=people.patient,
        version=services.latest_version("wai-sr"),
        answers={n: 4 for n in range(1, 13)},
        administered_at=timezone.now(),
        session=completed_session,
    )
    html = _open(client, token).content.decode()
    assert "srs-item_1" in html and "wai-sr-item_1" not in html
    client.post(ANSWER, SRS)
    assert Response.objects.filter(session=completed_session).count() == 2
    services.response_record(
        actor=people.coach,
        patient=people.patient,
        version=services.latest_version("srs"),
        answers={1: 9, 2: 9, 3: 9, 4: 9},
        administered_at=timezone.now(),
        session=completed_session,
    )
    other, other_token = links.link_create(
        actor=people.coach,
        patient=people.patient,
        instruments=["srs"],
        session=completed_session,
    )
    assert client.get(_path(other_token)).status_code == 410  # nothing left to answer


def test_a_link_cannot_name_another_patients_session(people, completed_session):
    from tests.factories import PatientFactory

    with pytest.raises(Exception, match="not booked for that session"):
        links.link_create(
            actor=people.coach,
            patient=PatientFactory(),
            instruments=["srs"],
            session=completed_session,
        )


def test_use_is_audited_without_an_actor_and_creation_with_one(client, people):
    link, token = _link(people)
    _answer(client, token, SRS)
    events = AuditEvent.objects.filter(object_type="outcomes.selfreportlink")
    assert events.get(action="create").actor == people.coach
    used = events.get(action="update", detail__link="answered")
    assert used.actor is None and used.detail["instruments"] == ["srs"]
    response_event = AuditEvent.objects.get(object_type="outcomes.response")
    assert response_event.actor is None and response_event.detail["source"] == "link"


def test_the_created_link_page_is_not_cached(client, people):
    client.force_login(people.coach)
    page = client.post(
        reverse("link_new", args=[people.patient.public_id]), {"instruments": ["srs"], "hours": 24}
    )
    assert "no-store" in page.headers["Cache-Control"]
    assert AuditEvent.objects.filter(
        object_type="outcomes.selfreportlink", action="create", actor=people.coach
    ).exists()


# --- delivery, more ------------------------------------------------------------------------


@pytest.mark.shifted_clock
def test_earlier_emails_keep_working_after_a_reminder(client, people, completed_session):
    links.send_due_links()
    first = re.search(r"http\S+/q/(\S+)/", mail.outbox[0].body).group(1)
    link = SelfReportLink.objects.get()
    SelfReportLink.objects.filter(pk=link.pk).update(
        last_sent_at=timezone.now() - datetime.timedelta(hours=25)
    )
    assert links.send_reminders() == 1
    second = re.search(r"http\S+/q/(\S+)/", mail.outbox[1].body).group(1)
    assert first != second
    assert "earlier e-mail works too" in mail.outbox[1].body
    link.refresh_from_db()
    assert link.token_hash == SelfReportLink.hash_token(second)
    assert link.earlier_token_hashes == [SelfReportLink.hash_token(first)]
    assert first not in str(link.__dict__) and second not in str(link.__dict__)
    assert _open(client, first).status_code == 200
    wai = {f"wai-sr-item_{n}": "4" for n in range(1, 13)}
    assert "Thank you" in client.post(ANSWER, {**wai, **SRS}).content.decode()
    assert client.get(_path(second)).status_code == 410  # answered: every token is spent


def test_two_workers_cannot_both_mail_a_sessions_questionnaires(people, completed_session):
    from django.db import IntegrityError, transaction

    due = links.due_by_email()
    assert len(due) == 1
    session, patient, codes = due[0]
    links.link_create(
        actor=None, patient=patient, instruments=codes, session=session, by_email=True
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        links.link_create(
            actor=None, patient=patient, instruments=codes, session=session, by_email=True
        )
    assert links.send_due_links() == 0 and not mail.outbox


def test_a_worker_that_loses_the_race_sends_nothing(people, completed_session, monkeypatch):
    # Both workers computed the same due list; the first one's link is already in place.
    stale = links.due_by_email()
    links.send_due_links()
    monkeypatch.setattr(links, "due_by_email", lambda now=None: stale)
    assert links.send_due_links() == 0
    assert len(mail.outbox) == 1


def test_a_mail_server_error_is_recorded_on_the_link_and_a_later_run_retries(
    people, completed_session, monkeypatch
):
    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr(links, "send_mail", refuse)
    assert links.send_due_links() == 0
    link = SelfReportLink.objects.get()
    assert link.sent_at is None and link.failed_attempts == 1
    assert link.last_failure == "ConnectionRefusedError"
    monkeypatch.undo()
    assert links.send_due_links() == 0  # not in the same run's minute: the server was down
    later = timezone.now() + links.UNSENT_RETRY_AFTER
    assert links.send_due_links(now=later) == 1
    link.refresh_from_db()
    assert link.sent_at is not None and len(mail.outbox) == 1


@pytest.mark.shifted_clock
def test_dosing_day_questionnaires_are_mailed_the_day_after(people, completed_session):
    from sessions.models import ProtocolStep, Session

    step = ProtocolStep.objects.filter(kind="dosing", instruments_due__contains=["meq-30"]).first()
    Session.objects.filter(pk=completed_session.pk).update(kind="dosing", protocol_step=step)
    assert links.send_due_links() == 0  # ended 2 hours ago: not tonight
    later = timezone.now() + datetime.timedelta(hours=17)
    assert links.send_due_links(now=later) == 1
    assert set(SelfReportLink.objects.get().instruments) >= {"meq-30"}


@pytest.mark.shifted_clock
def test_late_arrivals_get_the_mail_absent_patients_do_not(people, completed_session):
    from sessions.models import Attendance

    Attendance.objects.filter(session=completed_session).update(status="late")
    assert len(links.due_by_email()) == 1
    Attendance.objects.filter(session=completed_session).update(status="absent")
    assert links.due_by_email() == []


def test_only_patient_rated_questionnaires_are_mailed(people, completed_session):
    step = completed_session.protocol_step
    step.instruments_due = ["grid-hamd-17", "srs"]
    step.save()
    links.send_due_links()
    assert SelfReportLink.objects.get().instruments == ["srs"]


@pytest.mark.shifted_clock
def test_reminders_stop_when_the_clinic_enters_the_answers(people, completed_session):
    from outcomes import services

    links.send_due_links()
    for code, answers in (
        ("wai-sr", {n: 4 for n in range(1, 13)}),
        ("srs", {n: 9 for n in (1, 2, 3, 4)}),
    ):
        services.response_record(
            actor=people.coach,
            patient=people.patient,
            version=services.latest_version(code),
            answers=answers,
            administered_at=timezone.now(),
            session=completed_session,
        )
    SelfReportLink.objects.update(last_sent_at=timezone.now() - datetime.timedelta(hours=25))
    assert links.send_reminders() == 0 and len(mail.outbox) == 1


@pytest.mark.shifted_clock
def test_no_mail_without_an_address_or_for_an_old_session(people, completed_session):
    people.patient.email = ""
    people.patient.save()
    assert links.send_due_links() == 0
    people.patient.email = "pat@example.invalid"
    people.patient.save()
    assert links.send_due_links(now=timezone.now() + datetime.timedelta(days=4)) == 0


def test_the_beat_jobs_exist_and_the_tasks_call_the_services(people, completed_session):
    from django_celery_beat.models import PeriodicTask

    from outcomes import tasks

    names = set(PeriodicTask.objects.values_list("task", flat=True))
    assert {"outcomes.send_due_links", "outcomes.send_reminders"} <= names
    assert tasks.send_due_links.run() == 1
    assert tasks.send_reminders.run() == 0


@pytest.mark.shifted_clock
def test_reminders_stop_when_consent_is_withdrawn_or_the_patient_withdraws(
    people, completed_session
):
    links.send_due_links()
    people.patient.email_consent = False
    people.patient.save()
    SelfReportLink.objects.update(last_sent_at=timezone.now() - datetime.timedelta(hours=25))
    assert links.send_reminders() == 0
    people.patient.email_consent = True
    people.patient.save()
    from clinic import services as clinic_services

    clinic_services.patient_change_status(
        actor=people.admin, patient=people.patient, to_status="withdrawn", reason="Moved away"
    )
    assert links.send_reminders() == 0 and len(mail.outbox) == 1


def test_a_guesser_on_the_clinic_wifi_does_not_lock_out_other_patients(client, people):
    _, token = _link(people)
    wifi = {"REMOTE_ADDR": "203.0.113.50"}
    for n in range(10):
        assert client.get(_path(f"AAAAAAAA{n:040d}"), **wifi).status_code == 404
    assert client.get(_path("AAAAAAAA" + "9" * 40), **wifi).status_code == 429
    # A patient behind the same address with a real link still gets in.
    opened = _open(client, token, **wifi)
    assert (
        opened.status_code == 200
        and f"Hello {people.patient.first_name}" in opened.content.decode()
    )


# --- the token leaves the URL ----------------------------------------------------------------


def test_opening_a_link_trades_the_token_for_a_session_and_a_url_without_it(client, people):
    _, token = _link(people)
    first = client.get(_path(token))
    assert first.status_code == 302 and first.url == ANSWER
    assert first.headers["Referrer-Policy"] == "no-referrer"
    page = client.get(ANSWER)
    assert page.status_code == 200 and f"Hello {people.patient.first_name}" in page.content.decode()
    assert page.headers["Referrer-Policy"] == "same-origin"  # no token here to leak
    assert "no-store" in page.headers["Cache-Control"]
    for failed in (client.get(_path("x" * 43)), client.get(_path(token[:-1] + "!"))):
        assert failed.headers["Referrer-Policy"] == "no-referrer"
    assert token not in page.content.decode()
    assert token not in str(dict(client.session))  # only the link's id is kept


def test_the_answer_page_without_an_opened_link_says_to_open_it_again(client, people):
    page = client.get(ANSWER)
    assert page.status_code == 410 and "open the link from your e-mail" in page.content.decode()
    assert client.post(ANSWER, SRS).status_code == 410
    assert Response.objects.count() == 0


@pytest.mark.shifted_clock
def test_the_opened_link_lapses_from_the_session_after_a_while(client, people):
    from outcomes import views

    _, token = _link(people)
    _open(client, token)
    session = client.session
    entry = session[views.LINK_SESSION_KEY]
    entry["until"] = (timezone.now() - datetime.timedelta(seconds=1)).isoformat()
    session[views.LINK_SESSION_KEY] = entry
    session.save()
    assert client.post(ANSWER, SRS).status_code == 410
    assert Response.objects.count() == 0
    assert "Thank you" in _answer(client, token, SRS).content.decode()  # the link still works


@pytest.mark.shifted_clock
def test_an_expired_link_still_says_expired_after_the_exchange(client, people):
    link, token = _link(people)
    _open(client, token)
    SelfReportLink.objects.filter(pk=link.pk).update(
        expires_at=timezone.now() - links.SUBMIT_GRACE - datetime.timedelta(minutes=1)
    )
    page = client.get(ANSWER)
    assert page.status_code == 410 and "expired" in page.content.decode()


def _access_log(tmp_path):
    """gunicorn's logger as clinic/gunicorn_conf.py configures it, writing to a file."""
    from gunicorn.config import Config

    from clinic import gunicorn_conf
    from clinic.logsafe import SafeAccessLogger

    cfg = Config()
    for name in ("access_log_format", "logger_class"):
        cfg.set(name, getattr(gunicorn_conf, name))
    log_file = tmp_path / "access.log"
    cfg.set("accesslog", str(log_file))
    assert cfg.logger_class is SafeAccessLogger
    return cfg.logger_class(cfg), log_file


def _log_request(logger, environ, status="200 OK"):
    import datetime as dt
    from types import SimpleNamespace

    environ = {"SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "203.0.113.9", **environ}
    query = environ.get("QUERY_STRING", "")
    environ.setdefault("RAW_URI", environ["PATH_INFO"] + (f"?{query}" if query else ""))
    headers = [(k[5:].replace("_", "-"), v) for k, v in environ.items() if k.startswith("HTTP_")]
    logger.access(
        SimpleNamespace(status=status, sent=512, headers=[]),
        SimpleNamespace(headers=headers),
        environ,
        dt.timedelta(milliseconds=12),
    )


def test_the_access_log_masks_tokens_and_drops_query_strings(tmp_path):
    logger, log_file = _access_log(tmp_path)
    secret = "Zk3v9Q_secret-token-0123456789abcdefghijklmnop"
    for path, referer in [
        (f"/q/{secret}/", f"https://clinic.example/q/{secret}/?utm=mail"),
        (f"/calendar/{secret}.ics", "-"),
        ("/static/css/app.css", f"https://clinic.example/q/{secret}/"),
    ]:
        _log_request(
            logger,
            {
                "REQUEST_METHOD": "GET",
                "PATH_INFO": path,
                "QUERY_STRING": f"t={secret}",
                "HTTP_REFERER": referer,
            },
        )
    text = log_file.read_text()
    assert len(text.splitlines()) == 3
    assert secret not in text and "utm" not in text and "t=" not in text
    assert '"GET /q/***/ HTTP/1.1"' in text
    assert '"GET /calendar/***.ics HTTP/1.1"' in text
    assert '"https://clinic.example/q/***/"' in text
    assert '"GET /static/css/app.css HTTP/1.1"' in text


def test_one_visit_to_a_link_leaves_no_token_in_the_access_log(client, people, tmp_path):
    logger, log_file = _access_log(tmp_path)
    _, token = _link(people)
    first = client.get(_path(token))
    _log_request(logger, first.wsgi_request.META, status="302 Found")
    # The page, a static file it loads (a browser that ignored the policy sends the
    # page as Referer), and the answers.
    page = client.get(first.url, HTTP_REFERER=f"http://testserver{_path(token)}")
    _log_request(logger, page.wsgi_request.META)
    _log_request(
        logger,
        {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/static/js/app.js",
            "HTTP_REFERER": page.wsgi_request.build_absolute_uri(),
        },
    )
    thanks = client.post(ANSWER, SRS)
    assert "Thank you" in thanks.content.decode()
    _log_request(logger, thanks.wsgi_request.META)
    text = log_file.read_text()
    assert len(text.splitlines()) == 4
    assert token not in text and token[:16] not in text


def test_django_log_lines_about_links_and_feeds_are_masked(settings):
    import logging

    from clinic.logsafe import MaskSecretsFilter

    secret = "Zk3v9Q_secret-token-0123456789abcdefghijklmnop"
    record = logging.LogRecord(
        "django.request", logging.WARNING, __file__, 1, "Not Found: %s", (f"/q/{secret}/",), None
    )
    assert MaskSecretsFilter().filter(record)
    assert record.getMessage() == "Not Found: /q/***/"
    console = settings.LOGGING["handlers"]["console"]
    assert "mask_secrets" in console["filters"]
    assert settings.LOGGING["filters"]["mask_secrets"]["()"] == "clinic.logsafe.MaskSecretsFilter"
