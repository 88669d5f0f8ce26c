"""Everyday use at a desk (1366×900) and on a phone (390×844), in real Chromium against a live
server: editing a patient keeps the date of birth; the caseload fits a phone with its Log button
in view; no main page scrolls sideways; answer options are finger-sized; and every main page
passes axe-core's WCAG 2.2 AA rules with zero violations. Run with `-m browser`."""

import datetime
import shutil

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from clinic.models import Patient
from outcomes import links
from sessions import services as session_services
from tests.attack.catalogue import build_world
from tests.browser import _page, _sign_in, browser_fixture, chromium_fixture  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium"),
]

DESK = {"viewport": {"width": 1366, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
SIZES = pytest.mark.parametrize("size", [DESK, PHONE], ids=["desk", "phone"])

# The rules checked: axe-core's WCAG 2.0, 2.1 and 2.2 A and AA tags (axe-core as bundled by the
# pinned axe-playwright-python).
AXE_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"],
    },
    "resultTypes": ["violations"],
}


@pytest.fixture
def clinic(people):
    """The persona patient with one of everything, plus a session that ended two hours ago,
    that the coach facilitated and has not logged yet."""
    world = build_world(people)
    start = timezone.now().replace(microsecond=0) - datetime.timedelta(hours=3)
    world.unlogged = session_services.session_book(
        actor=people.admin,
        program=people.enrolment.program,
        enrolment=people.enrolment,
        kind="integration",
        start=start,
        end=start + datetime.timedelta(hours=1),
        facilitators=[people.coach],
    )
    return world


def _scrolls_sideways(page):
    return page.evaluate(
        "document.documentElement.scrollWidth > document.documentElement.clientWidth"
    )


def _too_wide(page):
    return page.evaluate(
        "[...document.querySelectorAll('body *')]"
        ".filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth)"
        ".slice(0, 4).map(e => e.tagName + '.' + e.className)"
    )


def _wait_for_charts(page):
    """Until every chart on the page has drawn (or failed): charts.js and analytics.js mark a
    chart `data-rendered="pending"` before the page's load event and change it once Plotly is
    done. Waiting for the network to fall silent instead cost half a second a page."""
    page.wait_for_load_state("load")
    page.wait_for_function("!document.querySelector('[data-rendered=pending]')")


def _main_pages(world):
    """(persona, page name, URL) for every main page; the list the axe-core check covers."""
    patient = world.patient.public_id
    dosing = world.dosing_now.public_id
    step = reverse("protocol_step_edit", args=[world.step.protocol_id, world.step.pk])
    return [
        (world.coach, "caseload", reverse("home")),
        (world.coach, "my sessions", reverse("my_calendar")),
        (world.coach, "patient", reverse("patient_detail", args=[patient])),
        (world.coach, "session", reverse("session_detail", args=[world.session.public_id])),
        (world.coach, "enter WAI-SR", reverse("response_new", args=[patient, "wai-sr"])),
        (world.coach, "log session", reverse("session_log", args=[world.unlogged.public_id])),
        (world.coach, "dosing day", reverse("session_detail", args=[dosing])),
        (world.coach, "record vital signs", reverse("session_vitals", args=[dosing])),
        (world.coach, "discharge", reverse("session_discharge", args=[dosing])),
        (world.coach, "supervision", reverse("supervision")),
        (world.clinician, "caseload", reverse("home")),
        (world.clinician, "patients", reverse("patient_list")),
        (world.clinician, "dashboard", reverse("patient_dashboard", args=[patient])),
        (world.clinician, "patient flags", reverse("patient_flags", args=[patient])),
        (world.clinician, "flag worklist", reverse("flag_worklist")),
        (world.clinician, "flag", reverse("flag_detail", args=[world.flag.public_id])),
        (world.clinician, "sessions timeline", reverse("patient_timeline", args=[patient])),
        (world.clinician, "response", reverse("response_detail", args=[world.response.public_id])),
        (world.clinician, "analytics", reverse("cohort_analytics")),
        (world.clinician, "exports", reverse("export")),
        (world.clinician, "supervision", reverse("supervision")),
        (world.clinician, "program report", reverse("program_report")),
        (world.clinician, "dosing day", reverse("session_detail", args=[dosing])),
        (
            world.clinician,
            "monitoring summary",
            reverse("session_monitoring_summary", args=[dosing]),
        ),
        (world.admin, "programs", reverse("program_list")),
        (world.admin, "program sessions", reverse("program_sessions", args=[world.program.pk])),
        (world.admin, "edit patient", reverse("patient_edit", args=[patient])),
        (world.admin, "thresholds", reverse("flag_rule_default")),
        (world.admin, "send a link", reverse("link_new", args=[patient])),
        (world.admin, "staff", reverse("staff_list")),
        (world.admin, "invite staff", reverse("staff_invite")),
        (world.admin, "new program", reverse("program_create")),
        (world.admin, "rooms", reverse("room_list")),
        (world.admin, "room", reverse("room_edit", args=[world.room.pk])),
        (world.admin, "protocols", reverse("protocol_list")),
        (world.admin, "protocol", reverse("protocol_edit", args=[world.step.protocol_id])),
        (world.admin, "protocol step", step),
    ]


@SIZES
def test_editing_a_patients_phone_number_keeps_the_date_of_birth(
    browser, live_server, people, size
):
    born = people.patient.date_of_birth
    assert born is not None
    page = _page(browser, **size)
    _sign_in(page, live_server, people.admin)
    page.goto(live_server.url + reverse("patient_edit", args=[people.patient.public_id]))
    assert page.input_value("input[name=date_of_birth]") == born.isoformat()
    page.fill("input[name=phone]", "+44 7700 900123")
    with page.expect_navigation():
        page.locator("main form [type=submit]").first.click()
    patient = Patient.objects.get(pk=people.patient.pk)
    assert patient.phone == "+44 7700 900123"
    assert patient.date_of_birth == born
    assert page.problems == []


@SIZES
def test_the_caseload_fits_the_screen_with_the_log_button_in_view(
    browser, live_server, clinic, size
):
    page = _page(browser, **size)
    _sign_in(page, live_server, clinic.coach)
    page.goto(live_server.url + reverse("home"))
    # The navigation marks the page you are on.
    assert page.locator("nav a[aria-current=page]").inner_text() == "Caseload"
    log = page.locator("main").get_by_role("link", name="Log session").last
    expect(log).to_be_visible()
    assert not _scrolls_sideways(page)
    box = log.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= size["viewport"]["width"]
    assert box["height"] >= 24
    with page.expect_navigation():
        log.click()
    assert reverse("session_log", args=[clinic.unlogged.public_id]) in page.url
    assert page.problems == []


@pytest.fixture
def clinic_dosing_now(clinic, ketamine_dosing):
    """`clinic`, and a ketamine dosing in the room now (the dose given 50 minutes ago)."""
    clinic.dosing_now = ketamine_dosing(50)
    return clinic


@SIZES
def test_main_pages_fit_the_screen_and_pass_axe(browser, live_server, clinic_dosing_now, size):
    clinic = clinic_dosing_now
    axe = Axe()
    problems = []
    signed_in = None
    page = _page(browser, **size)
    for user, name, url in _main_pages(clinic):
        if user != signed_in:
            page.context.clear_cookies()
            _sign_in(page, live_server, user)
            signed_in = user
        response = page.goto(live_server.url + url)
        assert response.status == 200, (name, response.status)
        _wait_for_charts(page)
        if page.locator("[data-rendered=failed]").count():
            problems.append(f"{name}: a chart failed to draw")
        if _scrolls_sideways(page):
            problems.append(f"{name}: scrolls sideways {_too_wide(page)}")
        if size is DESK and page.locator("nav.navbar").bounding_box()["height"] > 70:
            problems.append(f"{name}: the navigation wraps")
        results = axe.run(page, options=AXE_OPTIONS)
        for violation in results.response["violations"]:
            targets = [node["target"] for node in violation["nodes"]][:3]
            problems.append(f"{name}: {violation['id']} {targets}")
    # The patient's own page, opened from a link, signed out.
    page.context.clear_cookies()
    _link, token = links.link_create(
        actor=clinic.coach, patient=clinic.patient, instruments=["phq-9", "wai-sr", "srs"]
    )
    for name, url in (
        ("sign in", reverse("login")),
        ("patient link", reverse("link_open", args=[token])),
    ):
        page.goto(live_server.url + url)
        if _scrolls_sideways(page):
            problems.append(f"{name}: scrolls sideways")
        for violation in axe.run(page, options=AXE_OPTIONS).response["violations"]:
            targets = [node["target"] for node in violation["nodes"]][:3]
            problems.append(f"{name}: {violation['id']} {targets}")
    assert problems == [], "\n".join(problems)
    assert page.problems == []


@SIZES
def test_focus_is_clearly_visible(browser, live_server, people, size):
    page = _page(browser, **size)
    _sign_in(page, live_server, people.coach)
    page.goto(live_server.url + reverse("patient_list"))
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    outline = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; })()"
    )
    assert outline[0] != "none" and outline[1] >= 2


def test_answer_options_are_full_width_tap_targets_on_a_phone(browser, live_server, people):
    page = _page(browser, **PHONE)
    _sign_in(page, live_server, people.coach)
    page.goto(live_server.url + reverse("response_new", args=[people.patient.public_id, "wai-sr"]))
    options = page.locator("input[name=item_1]")
    assert options.count() == 5
    main_width = page.locator("main").bounding_box()["width"]
    for index in range(5):
        label = page.locator(f"label[for='{options.nth(index).get_attribute('id')}']")
        box = label.bounding_box()
        assert box["height"] >= 44
        assert box["width"] >= main_width * 0.8
    page.locator(f"label[for='{options.nth(3).get_attribute('id')}']").tap()
    assert page.is_checked("input[name=item_1][value='4']")
    assert not _scrolls_sideways(page)
    assert page.problems == []
