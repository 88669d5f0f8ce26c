"""Real Chromium against a live server: entering a WAI-SR after a session with the keyboard,
a double click making one response, the visual-analogue slider, and a patient's link on a
phone. Run with `-m browser`."""

import shutil

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from outcomes import links
from outcomes.models import Response
from tests.browser import _page, _sign_in, browser_fixture, chromium_fixture  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium"),
]


def test_a_coach_enters_a_wai_sr_after_the_session_by_keyboard(
    browser, live_server, people, completed_session
):
    page = _page(browser, viewport={"width": 1024, "height": 768})
    _sign_in(page, live_server, people.coach)
    page.goto(live_server.url + reverse("session_detail", args=[completed_session.public_id]))
    page.get_by_role("link", name="Enter WAI-SR").click()
    for number in range(1, 13):
        answer = "2" if number in (3, 5, 7, 9) else "4"
        # Each item is a radio group: focus it, then arrow keys choose the answer.
        page.focus(f"input[name=item_{number}][value='1']")
        page.keyboard.press("Space")
        for _ in range(int(answer) - 1):
            page.keyboard.press("ArrowRight")
    assert page.is_checked("input[name=item_3][value='2']")
    with page.expect_navigation():
        page.get_by_role("button", name="Save answers").dblclick()
    assert "/responses/" in page.url
    assert page.get_by_role("row", name="Bond").inner_text().split()[1] == "2"
    assert Response.objects.count() == 1
    assert Response.objects.get().session_id == completed_session.pk
    assert page.problems == []


def test_the_slider_and_the_typed_number_follow_each_other(browser, live_server, people):
    page = _page(browser, viewport={"width": 800, "height": 1000}, has_touch=True)
    _sign_in(page, live_server, people.coach)
    page.goto(live_server.url + reverse("response_new", args=[people.patient.public_id, "srs"]))
    number = page.locator("input[name=item_1]")
    slider = page.locator("#div_id_item_1 input[type=range]")
    assert "vas-unset" in slider.get_attribute("class")
    number.fill("7.5")
    assert slider.input_value() == "7.5"
    assert "vas-unset" not in slider.get_attribute("class")
    slider.fill("3.2")
    assert number.input_value() == "3.2"
    assert page.problems == []


def test_a_patient_answers_on_a_phone_once(browser, live_server, people):
    _link, token = links.link_create(
        actor=people.coach, patient=people.patient, instruments=["phq-9", "srs"]
    )
    page = _page(browser, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.goto(live_server.url + reverse("link_open", args=[token]))
    assert page.get_by_text(f"Hello {people.patient.first_name}").is_visible()
    assert people.patient.last_name not in page.content()
    for number in range(1, 11):
        page.check(f"input[name=phq-9-item_{number}][value='0']")
    # One questionnaire at a time: the SRS is the second step.
    page.get_by_role("button", name="Next").click()
    for number in range(1, 5):
        page.fill(f"input[name=srs-item_{number}]", "9")
    page.get_by_role("button", name="Send my answers").click()
    page.wait_for_load_state()
    assert page.get_by_text("Thank you").is_visible()
    assert Response.objects.filter(source="link").count() == 2
    page.goto(live_server.url + reverse("link_open", args=[token]))
    assert page.get_by_text("already been answered").is_visible()
    assert [p for p in page.problems if "410" not in p] == []


@pytest.mark.parametrize(
    "size",
    [
        {"viewport": {"width": 1366, "height": 900}},
        {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
    ],
    ids=["desk", "phone"],
)
def test_a_patient_answers_three_questionnaires_one_at_a_time(browser, live_server, people, size):
    _link, token = links.link_create(
        actor=people.coach, patient=people.patient, instruments=["phq-9", "wai-sr", "srs"]
    )
    page = _page(browser, **size)
    page.goto(live_server.url + reverse("link_open", args=[token]))
    crisis = page.locator(".crisis-notice")
    expect(crisis).to_be_visible()
    assert crisis.bounding_box()["y"] < 300
    expect(page.get_by_text("Questionnaire 1 of 3")).to_be_visible()
    expect(page.get_by_role("button", name="Send my answers")).to_be_hidden()
    for number in range(1, 11):
        page.locator(f"label[for='id_phq-9-item_{number}_0']").click()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("Questionnaire 2 of 3")).to_be_visible()
    expect(page.locator("input[name=phq-9-item_1]").first).to_be_hidden()
    # Two of the four bond items left out (items 3 and 5): too few for a bond score, so the
    # page comes back and focus goes to the first of them.
    for number in [1, 2, 4, *range(6, 13)]:
        page.locator(f"label[for='id_wai-sr-item_{number}_3']").click()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("Questionnaire 3 of 3")).to_be_visible()
    srs = page.locator("#div_id_srs-item_1 input[type=range]")
    assert "vas-unset" in srs.get_attribute("class")
    for number in range(1, 5):
        page.fill(f"input[name=srs-item_{number}]", "8")
    with page.expect_navigation():
        page.get_by_role("button", name="Send my answers").click()
    assert Response.objects.filter(source="link").count() == 0
    expect(page.get_by_text("Questionnaire 2 of 3")).to_be_visible()
    assert page.evaluate("document.activeElement.name") == "wai-sr-item_3"
    assert page.input_value("input[name=srs-item_1]") == "8"
    page.locator("label[for='id_wai-sr-item_3_3']").click()
    page.locator("label[for='id_wai-sr-item_5_3']").click()
    page.get_by_role("button", name="Next").click()
    with page.expect_navigation():
        page.get_by_role("button", name="Send my answers").click()
    expect(page.get_by_text("Thank you")).to_be_visible()
    assert Response.objects.filter(source="link").count() == 3
    assert page.problems == []
