"""Delivery by the calendar: follow-ups arrive on their dates whether or not a visit was
logged, with three reminders a day apart inside the link's life (the real defaults)."""

import datetime
import re
import zoneinfo

import pytest
import time_machine
from django.core import mail
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from clinic import services as clinic_services
from clinic.celery import app as celery_app
from outcomes import links, selectors
from outcomes.models import SelfReportLink
from tests.factories import PatientFactory, ProgramFactory, protocol_named

pytestmark = pytest.mark.django_db

LONDON = zoneinfo.ZoneInfo("Europe/London")
TWO_DOSES = "Psilocybin for depression, two doses"
# A Monday 08:00 in London; Dosing 2 of the protocol falls 32 days after the start.
START = datetime.datetime(2027, 1, 4, 8, 0, tzinfo=LONDON)
LAST_DOSING = datetime.date(2027, 2, 5)


def _enrol_with_consent(people, start=START):
    patient = PatientFactory(first_name="Robin", email_consent=True)
    program = ProgramFactory(protocol=protocol_named(TWO_DOSES), start_date=start.date())
    enrolment = clinic_services.patient_enrol(
        actor=people.admin, patient=patient, program=program, start_date=start.date()
    )
    return patient, enrolment


def _calendar_beat_entries():
    """Beat's entries for the calendar, read from the database scheduler's rows (written by
    the migrations). The hourly questionnaire jobs deliver after logged sessions and for
    staff-made links (and retry bounced e-mails, tested below), the kiosk job ends idle
    tablets: with no visit logged they have nothing to do here, and stepping them through a
    year hour by hour would take minutes."""
    entries = list(
        PeriodicTask.objects.filter(enabled=True, task="outcomes.send_calendar_measures")
    )
    assert len(entries) == 1 and entries[0].crontab is not None
    hourly = PeriodicTask.objects.filter(enabled=True, task__startswith="outcomes.").exclude(
        pk=entries[0].pk
    )
    assert {"outcomes.send_due_links", "outcomes.send_reminders"} <= {t.task for t in hourly}
    return [(entry.task, entry.crontab.schedule) for entry in entries]


def _run_beat(traveller, *, start, until, entries):
    """Advance the frozen clock from `start` to `until` a minute at a time around each due
    moment, asking each entry's own schedule whether it is due (as beat does) and calling
    the task eagerly through Celery when it is. Returns (local time, message) per e-mail."""
    celery_app.loader.import_default_modules()  # the worker's autodiscovery
    last_run = {name: start for name, _ in entries}
    received, now = [], start
    while now <= until:
        traveller.move_to(now)
        waits = []
        for name, schedule in entries:
            due, wait_seconds = schedule.is_due(last_run[name])
            if due:
                celery_app.tasks[name].apply()
                last_run[name] = now
                due, wait_seconds = schedule.is_due(now)
            waits.append(wait_seconds)
        received += [(now.astimezone(LONDON), m) for m in mail.outbox[len(received) :]]
        # Beat sleeps until the nearest entry is due; so does the clock here.
        now += datetime.timedelta(seconds=max(60, min(waits)))
    return received


def test_a_year_of_follow_ups_arrives_on_the_calendar_with_three_reminders_each(people):
    with time_machine.travel(START, tick=False) as traveller:
        patient, _ = _enrol_with_consent(people)
        received = _run_beat(
            traveller,
            start=START,
            until=datetime.datetime(2028, 2, 12, 8, 0, tzinfo=LONDON),
            entries=_calendar_beat_entries(),
        )
    assert all(message.to == [patient.email] for _, message in received)
    by_time_point = {}
    for at, message in received:
        point = re.search(r"\((4 weeks|3 months|6 months|12 months)\)$", message.subject)
        if point:
            by_time_point.setdefault(point.group(1), []).append((at, message))
    due = {
        "4 weeks": LAST_DOSING + datetime.timedelta(days=28),
        "3 months": LAST_DOSING + datetime.timedelta(days=91),
        "6 months": LAST_DOSING + datetime.timedelta(days=182),
        "12 months": LAST_DOSING + datetime.timedelta(days=365),
    }
    assert set(by_time_point) == set(due)
    for label, day in due.items():
        mails = by_time_point[label]
        # The first e-mail on the due date, then three reminders a day apart.
        assert [at.date() for at, _ in mails] == [
            day + datetime.timedelta(days=n) for n in range(4)
        ], label
        assert [m.subject.startswith("Reminder") for _, m in mails] == [False, True, True, True]
        link = SelfReportLink.objects.get(patient=patient, time_point=label)
        # The last reminder still leaves the patient a day to answer.
        assert link.expires_at - datetime.timedelta(days=1) >= _utc(mails[-1][0])
        assert link.instruments == ["phq-9", "qids-sr-16", "gad-7"]  # not the clinician's
    # No visit was logged at all: every e-mail came from the calendar.
    assert not SelfReportLink.objects.filter(session__isnull=False).exists()


def _utc(local):
    return local.astimezone(datetime.UTC)


def _at_follow_up(traveller, days_after_last_dosing=28, hour=9):
    day = LAST_DOSING + datetime.timedelta(days=days_after_last_dosing)
    traveller.move_to(datetime.datetime.combine(day, datetime.time(hour, 0), tzinfo=LONDON))


def test_beat_twice_in_the_same_minute_sends_one_email_per_due_item(people):
    with time_machine.travel(START, tick=False) as traveller:
        patient, _ = _enrol_with_consent(people)
        _at_follow_up(traveller)
        due = selectors.calendar_due_to_send()
        assert [item.point.label for item in due] == ["4 weeks"]
        assert links.send_calendar_measures() == 1
        assert links.send_calendar_measures() == 0
        # A second worker that computed the same list before the first one's claim.
        monkey_sent = sum(
            bool(
                links._claim_and_mail(
                    patient=item.patient, instruments=item.to_mail, occasion=item.point
                )
            )
            for item in due
        )
        assert monkey_sent == 0
    assert len(mail.outbox) == 1
    assert SelfReportLink.objects.filter(patient=patient, by_email=True).count() == 1


def test_nothing_is_sent_before_the_due_date_or_after_the_window(people):
    with time_machine.travel(START, tick=False) as traveller:
        _enrol_with_consent(people)
        _at_follow_up(traveller, days_after_last_dosing=27, hour=12)
        assert links.send_calendar_measures() == 0
        _at_follow_up(traveller, days_after_last_dosing=28, hour=8)
        assert links.send_calendar_measures() == 0  # due today, but not before 09:00
        _at_follow_up(traveller, days_after_last_dosing=28 + 8, hour=12)
        assert links.send_calendar_measures() == 0  # the window of 7 days has closed: missed
    assert not mail.outbox


def test_no_consent_or_a_withdrawn_patient_gets_nothing_and_a_sent_link_stops_reminding(people):
    with time_machine.travel(START, tick=False) as traveller:
        patient, _ = _enrol_with_consent(people)
        patient.email_consent = False
        patient.save()
        _at_follow_up(traveller)
        assert links.send_calendar_measures() == 0
        patient.email_consent = True
        patient.save()
        assert links.send_calendar_measures() == 1
        clinic_services.patient_change_status(
            actor=people.admin, patient=patient, to_status="withdrawn", reason="Moved away"
        )
        for day in range(1, 4):
            _at_follow_up(traveller, days_after_last_dosing=28 + day)
            assert links.send_calendar_measures() == 0
            assert links.send_due_links() == 0 and links.send_reminders() == 0
    assert len(mail.outbox) == 1


def test_an_smtp_failure_is_recorded_in_the_delivery_log_and_retried(people, monkeypatch):
    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("smtp down")

    with time_machine.travel(START, tick=False) as traveller:
        patient, _ = _enrol_with_consent(people)
        _at_follow_up(traveller)
        monkeypatch.setattr(links, "send_mail", refuse)
        assert links.send_calendar_measures() == 0
        assert links.send_due_links() == 0  # the hourly retry waits for a later run
        link = SelfReportLink.objects.get(patient=patient)
        assert link.sent_at is None and link.failed_attempts == 1
        (row,) = selectors.delivery_log(patient=patient)
        assert "bounced 1 time" in row["events"][0] and "retrying" in row["events"][0]
        monkeypatch.undo()
        _at_follow_up(traveller, hour=10)
        assert links.send_due_links() == 1
    link.refresh_from_db()
    assert link.sent_at is not None and len(mail.outbox) == 1
    # The retried e-mail carries a working token, the only one that was ever delivered.
    token = re.search(r"/q/(\S+)/", mail.outbox[0].body).group(1)
    assert link.token_hash == SelfReportLink.hash_token(token)


def _reminders_over_four_days(traveller, created):
    sent = []
    for hour in range(1, 4 * 24 + 2):
        traveller.move_to(created + datetime.timedelta(hours=hour))
        if links.send_reminders():
            sent.append(hour)
    return sent


def test_staff_links_get_three_reminders_a_day_apart_unless_staff_opt_out(client, people):
    people.patient.email_consent = True
    people.patient.save()
    url = reverse("link_new", args=[people.patient.public_id])
    with time_machine.travel(START, tick=False) as traveller:
        client.force_login(people.coach)
        page = client.post(url, {"instruments": ["srs"], "reminders": "on"}).content.decode()
        assert "up to 3 reminders" in page
        link = SelfReportLink.objects.get()
        assert link.expires_at == START + datetime.timedelta(days=4)
        assert _reminders_over_four_days(traveller, START) == [24, 48, 72]
        assert len(mail.outbox) == 3 and all(m.subject.startswith("Reminder") for m in mail.outbox)

        traveller.move_to(START + datetime.timedelta(days=10))
        client.force_login(people.coach)
        page = client.post(url, {"instruments": ["srs"]}).content.decode()  # box unticked
        assert "No reminders will be sent" in page
        assert _reminders_over_four_days(traveller, START + datetime.timedelta(days=10)) == []
    assert len(mail.outbox) == 3


def test_a_staff_link_with_a_short_life_spaces_its_reminders_to_fit(client, people):
    people.patient.email_consent = True
    people.patient.save()
    with time_machine.travel(START, tick=False) as traveller:
        client.force_login(people.coach)
        client.post(
            reverse("link_new", args=[people.patient.public_id]),
            {"instruments": ["srs"], "hours": 48, "reminders": "on"},
        )
        # 48 hours hold three reminders 12 hours apart and 12 hours to answer the last.
        assert _reminders_over_four_days(traveller, START) == [12, 24, 36]
