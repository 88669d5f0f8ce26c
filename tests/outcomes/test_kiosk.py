"""Kiosk mode: the coach hands a tablet to the patient in the room for the questionnaires due
at the session; the tablet is signed out of the coach's account, locks after the answers or
30 idle minutes, and only the coach's code or sign-in unlocks it."""

import datetime
import re

import pytest
import time_machine
from django.core.exceptions import PermissionDenied
from django.core.signing import Signer
from django.urls import reverse
from django.utils import timezone

from clinic.models import AuditEvent
from clinic.roles import Role
from outcomes import kiosk, services
from outcomes.models import Kiosk, Response
from outcomes.views import KIOSK_SESSION_KEY
from tests.factories import (
    CoachAssignmentFactory,
    EnrolmentFactory,
    PatientFactory,
    UserFactory,
)
from tests.helpers import assert_role_answer, book_session

pytestmark = pytest.mark.django_db

ANSWER, LOCKED = reverse("kiosk_answer"), reverse("kiosk_locked")
WAI = {f"wai-sr-item_{n}": "4" for n in range(1, 13)}
SRS = {"srs-item_1": "8.5", "srs-item_2": "9", "srs-item_3": "9.5", "srs-item_4": "9"}


def _start(client, people, room, user=None):
    """The coach (or `user`) starts the kiosk on this browser; returns the unlock code."""
    client.force_login(user or people.coach)
    page = client.post(
        reverse("kiosk_start", args=[room.public_id]), {"patient": str(people.patient.public_id)}
    )
    assert page.status_code == 200, page.content.decode()
    return re.search(r'data-testid="unlock-code">(\d{6})<', page.content.decode()).group(1)


def _kiosk_events(kiosk_row) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_id=str(kiosk_row.public_id))
        .order_by("at", "id")
        .values_list("detail__kiosk", flat=True)
    )


@pytest.mark.shifted_clock
def test_the_coach_starts_it_and_is_signed_out_on_that_browser(client, people, room):
    client.force_login(people.coach)
    session_page = client.get(reverse("session_detail", args=[room.public_id])).content.decode()
    assert reverse("kiosk_start", args=[room.public_id]) in session_page
    form = client.get(reverse("kiosk_start", args=[room.public_id])).content.decode()
    assert people.patient.full_name in form and "WAI-SR, SRS" in form

    code = _start(client, people, room)

    assert len(code) == 6
    assert "_auth_user_id" not in client.session
    # The coach's pages now ask for a sign-in on this browser.
    patient_page = client.get(reverse("patient_detail", args=[people.patient.public_id]))
    assert patient_page.status_code == 302 and patient_page.url.startswith(reverse("login"))
    started = Kiosk.objects.get()
    assert started.instruments == ["wai-sr", "srs"] and started.started_by == people.coach
    assert started.unlock_code_hash != code
    assert _kiosk_events(started) == ["started"]
    assert AuditEvent.objects.get(object_id=str(started.public_id)).actor == people.coach


@pytest.mark.shifted_clock
@pytest.mark.parametrize(
    "persona, expected",
    [("anonymous", 302), ("coach", 200), ("other_coach", 404), ("clinician", 200), ("admin", 200)],
)
def test_who_may_open_the_start_page(client, people, room, persona, expected):
    assert_role_answer(
        client, people, persona, reverse("kiosk_start", args=[room.public_id]), expected
    )


@pytest.mark.shifted_clock
def test_a_coach_of_the_patient_who_is_not_the_sessions_coach_may_not_start_it(
    client, people, room
):
    colleague = UserFactory(role=Role.COACH, display_name="Col League")
    CoachAssignmentFactory(
        enrolment=people.enrolment, coach=colleague, assigned_by=people.admin, role="integration"
    )
    client.force_login(colleague)
    url = reverse("kiosk_start", args=[room.public_id])
    assert client.get(url).status_code == 403
    assert client.post(url, {"patient": str(people.patient.public_id)}).status_code == 403
    with pytest.raises(PermissionDenied):
        kiosk.kiosk_start(actor=colleague, session=room, patient=people.patient)
    assert not Kiosk.objects.exists() and "_auth_user_id" in client.session


@pytest.mark.shifted_clock
def test_a_patient_with_nothing_left_to_answer_gets_no_kiosk(client, people, room):
    for code, answers in (("wai-sr", WAI), ("srs", SRS)):
        services.response_record(
            actor=people.coach,
            patient=people.patient,
            version=services.latest_version(code),
            answers={int(k.rsplit("_", 1)[1]): float(v) for k, v in answers.items()},
            administered_at=timezone.now(),
            session=room,
        )
    client.force_login(people.coach)
    url = reverse("kiosk_start", args=[room.public_id])
    assert "Nobody at this session has questionnaires" in client.get(url).content.decode()
    refused = client.post(url, {"patient": str(people.patient.public_id)})
    assert refused.status_code == 200 and "Nobody at this session" in refused.content.decode()
    assert not Kiosk.objects.exists() and "_auth_user_id" in client.session


@pytest.mark.shifted_clock
def test_the_patient_sees_only_their_due_questionnaires_and_one_send_makes_one_record(
    client, people, room
):
    _start(client, people, room)
    page = client.get(ANSWER).content.decode()
    assert f"Hello {people.patient.first_name}" in page
    assert people.patient.last_name not in page and people.patient.record_number not in page
    assert 'name="wai-sr-item_12"' in page and 'name="srs-item_4"' in page
    assert "phq-9" not in page

    sent = client.post(ANSWER, WAI | SRS)
    again = client.post(ANSWER, WAI | SRS)  # a double tap, or the browser's resend

    assert sent.status_code == again.status_code == 302 and sent.url == again.url == LOCKED
    responses = Response.objects.filter(patient=people.patient, session=room)
    assert sorted(responses.values_list("version__instrument__code", flat=True)) == [
        "srs",
        "wai-sr",
    ]
    assert set(responses.values_list("source", flat=True)) == {"kiosk"}
    assert responses.get(version__instrument__code="srs").scores.get(scale="total").value == 36
    finished = Kiosk.objects.get()
    assert finished.end_reason == "submitted"
    assert _kiosk_events(finished) == ["started", "submitted", "locked", "ended"]
    with pytest.raises(kiosk.KioskClosed):
        kiosk.kiosk_submit(kiosk=finished, answers={"srs": {1: 5, 2: 5, 3: 5, 4: 5}})
    assert responses.count() == 2


@pytest.mark.shifted_clock
def test_missing_answers_are_shown_again_with_what_was_typed(client, people, room):
    _start(client, people, room)
    page = client.post(ANSWER, WAI | {"srs-item_1": "7.5"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "Some answers need another look" in html and 'value="7.5"' in html
    assert not Response.objects.exists() and Kiosk.objects.get().ended_at is None


@pytest.mark.shifted_clock
def test_the_locked_tablet_opens_with_the_coachs_code_and_counts_wrong_ones(client, people, room):
    code = _start(client, people, room)
    client.post(ANSWER, WAI | SRS)
    locked = client.get(LOCKED).content.decode()
    assert "This tablet is locked" in locked and "Your answers have been sent" in locked
    assert people.patient.first_name not in locked

    wrong = client.post(LOCKED, {"code": "000000" if code != "000000" else "111111"})
    assert "That code is not right" in wrong.content.decode()
    assert Kiosk.objects.get().unlock_attempts == 1 and "_auth_user_id" not in client.session

    unlocked = client.post(LOCKED, {"code": code})

    assert unlocked.status_code == 302
    assert unlocked.url == reverse("session_detail", args=[room.public_id])
    assert client.session["_auth_user_id"] == str(people.coach.pk)
    assert KIOSK_SESSION_KEY not in client.session
    assert _kiosk_events(Kiosk.objects.get())[-2:] == ["wrong code", "unlocked"]


@pytest.mark.shifted_clock
def test_after_five_wrong_codes_only_the_sign_in_unlocks(client, people, room):
    code = _start(client, people, room)
    client.post(reverse("kiosk_hand_back"))
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(kiosk.UNLOCK_TRIES):
        client.post(LOCKED, {"code": wrong})
    refused = client.post(LOCKED, {"code": code})
    assert "The code no longer works" in refused.content.decode()
    assert "_auth_user_id" not in client.session

    client.force_login(people.coach)  # the normal sign-in page, coming back to the lock
    back = client.get(LOCKED)

    assert back.url == reverse("session_detail", args=[room.public_id])
    ended = Kiosk.objects.get()
    assert ended.end_reason == "handed_back" and ended.unlocked_at is not None
    assert _kiosk_events(ended)[-1] == "unlocked" and KIOSK_SESSION_KEY not in client.session


@pytest.mark.shifted_clock
def test_thirty_idle_minutes_lock_it_but_activity_keeps_it_open(client, people, room):
    _start(client, people, room)
    now = timezone.now()
    with time_machine.travel(now + datetime.timedelta(minutes=20), tick=False):
        assert client.get(ANSWER).status_code == 200
    with time_machine.travel(now + datetime.timedelta(minutes=40), tick=False):
        assert client.get(ANSWER).status_code == 200  # 20 minutes since the last request
    with time_machine.travel(now + datetime.timedelta(minutes=70, seconds=1), tick=False):
        late = client.post(ANSWER, WAI | SRS)
    assert late.url == LOCKED
    assert not Response.objects.exists()
    idle = Kiosk.objects.get()
    assert idle.end_reason == "idle"
    assert _kiosk_events(idle) == ["started", "locked", "ended"]


@pytest.mark.shifted_clock
def test_the_kiosk_browser_reaches_no_patients_record(client, people, room):
    other = PatientFactory(first_name="Quinn", last_name="Otherly")
    other_enrolment = EnrolmentFactory(patient=other, enrolled_by=people.admin)
    CoachAssignmentFactory(enrolment=other_enrolment, coach=people.coach, assigned_by=people.admin)
    other_session = book_session(
        other_enrolment, actor=people.admin, hours_from_now=-5, facilitators=[people.coach]
    )
    _start(client, people, room)
    for url in (
        reverse("home"),
        reverse("patient_detail", args=[other.public_id]),
        reverse("patient_detail", args=[people.patient.public_id]),
        reverse("session_detail", args=[other_session.public_id]),
        reverse("kiosk_start", args=[other_session.public_id]),
        reverse("response_new", args=[other.public_id, "srs"]),
    ):
        page = client.get(url)
        assert page.status_code == 302 and page.url.startswith(reverse("login")), url
    assert "Otherly" not in client.get(ANSWER).content.decode()


@pytest.mark.shifted_clock
def test_a_forged_token_opens_nothing(client, people, room):
    _start(client, people, room)
    started = Kiosk.objects.get()
    session = client.session
    session[KIOSK_SESSION_KEY] = Signer().sign(str(started.public_id))  # not the kiosk's salt
    session.save()
    assert client.get(ANSWER).url == LOCKED
    locked = client.get(LOCKED).content.decode()
    assert 'name="code"' not in locked and Kiosk.objects.get().ended_at is None


@pytest.mark.shifted_clock
def test_beat_ends_a_tablet_left_idle_without_anyone_touching_it(client, people, room):
    from django_celery_beat.models import PeriodicTask

    from outcomes import tasks

    assert PeriodicTask.objects.filter(task="outcomes.end_idle_kiosks").exists()
    _start(client, people, room)
    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=29), tick=False):
        assert tasks.end_idle_kiosks.run() == 0
    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=31), tick=False):
        assert tasks.end_idle_kiosks.run() == 1
        assert tasks.end_idle_kiosks.run() == 0
    idle = Kiosk.objects.get()
    assert idle.end_reason == "idle" and _kiosk_events(idle) == ["started", "locked", "ended"]
    assert client.get(ANSWER).url == LOCKED


@pytest.mark.shifted_clock
def test_starting_again_for_the_same_patient_locks_the_first_tablet(client, people, room):
    from django.test import Client

    first_tablet = Client()
    _start(first_tablet, people, room)
    _start(client, people, room)
    first, second = Kiosk.objects.order_by("started_at", "id")
    assert first.end_reason == "replaced" and second.ended_at is None
    assert first_tablet.get(ANSWER).url == LOCKED
    assert client.get(ANSWER).status_code == 200


@pytest.mark.shifted_clock
def test_the_coach_signs_in_on_the_locked_tablet_and_lands_on_the_session(client, people, room):
    from tests.factories import PASSWORD

    _start(client, people, room)
    client.post(ANSWER, WAI | SRS)
    locked = client.get(LOCKED).content.decode()
    sign_in = f"{reverse('login')}?next={LOCKED}"
    assert sign_in in locked

    landed = client.post(
        sign_in, {"username": people.coach.email, "password": PASSWORD}, follow=True
    )

    assert landed.redirect_chain[-1][0] == reverse("session_detail", args=[room.public_id])
    assert KIOSK_SESSION_KEY not in client.session
    unlocked = Kiosk.objects.get()
    assert unlocked.unlocked_at is not None
    assert _kiosk_events(unlocked)[-1] == "unlocked"
    assert AuditEvent.objects.filter(
        object_id=str(unlocked.public_id), detail__kiosk="unlocked", actor=people.coach
    ).exists()
