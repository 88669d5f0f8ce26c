"""Kiosk mode on a tablet (820×1180), in real Chromium against a live server: the coach starts
it from the session page, the patient answers, the screen locks, and nothing of another patient
is reachable from that browser until the coach unlocks it. Run with `-m browser`."""

import datetime
import shutil

import pytest
import time_machine
from axe_playwright_python.sync_playwright import Axe
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from outcomes.models import Kiosk, Response
from tests.browser import _page, _sign_in, browser_fixture, chromium_fixture  # noqa: F401
from tests.factories import CoachAssignmentFactory, EnrolmentFactory, PatientFactory
from tests.helpers import book_session

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium"),
]

TABLET = {"viewport": {"width": 820, "height": 1180}, "is_mobile": True, "has_touch": True}
# axe-core's WCAG 2.0, 2.1 and 2.2 A and AA rules, as for the main pages.
AXE_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"],
    },
    "resultTypes": ["violations"],
}


def _fits_and_passes_axe(page, name: str) -> list[str]:
    problems = [
        f"{name}: {violation['id']} {[node['target'] for node in violation['nodes']][:3]}"
        for violation in Axe().run(page, options=AXE_OPTIONS).response["violations"]
    ]
    if page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth"):
        problems.append(f"{name}: scrolls sideways")
    return problems


@pytest.mark.shifted_clock
@pytest.mark.real_clock(
    reason="Chromium keeps the real clock: a cookie set at a shifted instant would be expired "
    "or odd to it. The kiosk's rules run at every shifted instant in test_kiosk.py."
)
def test_a_patient_answers_on_the_kiosk_and_the_tablet_locks(browser, live_server, people, room):
    other = PatientFactory(first_name="Quinn", last_name="Otherly")
    other_enrolment = EnrolmentFactory(patient=other, enrolled_by=people.admin)
    CoachAssignmentFactory(enrolment=other_enrolment, coach=people.coach, assigned_by=people.admin)
    other_session = book_session(
        other_enrolment, actor=people.admin, hours_from_now=-4, facilitators=[people.coach]
    )
    page = _page(browser, **TABLET)
    _sign_in(page, live_server, people.coach)
    page.goto(live_server.url + reverse("session_detail", args=[room.public_id]))
    page.get_by_role("link", name="Kiosk: hand this tablet").click()
    problems = _fits_and_passes_axe(page, "start")
    page.get_by_role("button", name="Start the kiosk and sign me out here").click()
    code = page.get_by_test_id("unlock-code").inner_text().strip()
    problems += _fits_and_passes_axe(page, "handover")
    page.get_by_role("link", name=f"Hand the tablet to {people.patient.first_name}").click()
    problems += _fits_and_passes_axe(page, "questionnaires")

    # The patient's page: first name only, their two questionnaires, finger-sized answers.
    expect(page.get_by_text(f"Hello {people.patient.first_name}")).to_be_visible()
    assert people.patient.last_name not in page.content()
    expect(page.get_by_text("Questionnaire 1 of 2")).to_be_visible()
    option = page.locator("label[for='id_wai-sr-item_1_3']")
    assert option.bounding_box()["height"] >= 44
    for number in range(1, 13):
        page.locator(f"label[for='id_wai-sr-item_{number}_3']").click()
    page.get_by_role("button", name="Next").click()
    for number in range(1, 5):
        page.fill(f"input[name=srs-item_{number}]", "9")
    with page.expect_navigation():
        page.get_by_role("button", name="Send my answers").click()

    expect(page.get_by_role("heading", name="This tablet is locked")).to_be_visible()
    problems += _fits_and_passes_axe(page, "locked")
    assert problems == [], "\n".join(problems)
    assert Response.objects.filter(source="kiosk", session=room).count() == 2
    # From the locked tablet: going back, and every URL of the other patient, the persona
    # patient's own record and the caseload, ask for a sign-in and show nothing.
    page.go_back()
    expect(page.get_by_role("heading", name="This tablet is locked")).to_be_visible()
    for url in (
        reverse("patient_detail", args=[other.public_id]),
        reverse("session_detail", args=[other_session.public_id]),
        reverse("response_new", args=[other.public_id, "srs"]),
        reverse("kiosk_start", args=[other_session.public_id]),
        reverse("patient_detail", args=[people.patient.public_id]),
        reverse("home"),
    ):
        page.goto(live_server.url + url)
        assert "/accounts/login/" in page.url, url
        assert "Otherly" not in page.content() and "Quinn" not in page.content()

    # The coach's code reopens the tablet on the session, signed in as the coach.
    page.goto(live_server.url + reverse("kiosk_locked"))
    page.fill("input[name=code]", code)
    with page.expect_navigation():
        page.get_by_role("button", name="Unlock").click()
    assert page.url.endswith(reverse("session_detail", args=[room.public_id]))
    expect(page.get_by_role("link", name="Log session")).to_be_visible()
    assert Kiosk.objects.get().unlocked_at is not None
    assert page.problems == []


@pytest.mark.shifted_clock
@pytest.mark.real_clock(
    reason="Chromium keeps the real clock; the page's own timer is moved with Playwright's clock."
)
def test_a_tablet_left_alone_for_thirty_minutes_locks_itself(browser, live_server, people, room):
    page = _page(browser, **TABLET)
    page.clock.install()
    _sign_in(page, live_server, people.coach)
    page.goto(live_server.url + reverse("kiosk_start", args=[room.public_id]))
    page.get_by_role("button", name="Start the kiosk and sign me out here").click()
    page.get_by_role("link", name=f"Hand the tablet to {people.patient.first_name}").click()
    expect(page.get_by_text(f"Hello {people.patient.first_name}")).to_be_visible()
    page.locator("label[for='id_wai-sr-item_1_3']").click()
    # 29 minutes after the last touch the questionnaire is still there.
    page.clock.run_for("29:00")
    expect(page.get_by_text(f"Hello {people.patient.first_name}")).to_be_visible()
    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=31), tick=True):
        page.clock.run_for("01:02")
        expect(page.get_by_role("heading", name="This tablet is locked")).to_be_visible()
    assert Kiosk.objects.get().end_reason == "idle"
    assert not Response.objects.exists()
    assert page.problems == []
