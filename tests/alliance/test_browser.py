"""Real Chromium against a live server, with a real Celery worker where flags are computed:
a coach logs a session and enters a weak WAI-SR, then sees the weak-bond flag on the
caseload; a clinician's dashboard draws every chart under the page's CSP without an error;
another coach cannot tell a patient who is not theirs exists. Run with `-m browser`."""

import datetime
import io
import re
import shutil
import uuid
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from alliance.models import Flag
from clinic.models import User
from outcomes import services as outcome_services
from outcomes.models import Response
from sessions import services as session_services
from sessions.models import ProtocolStep, Session
from tests.browser import _page, _sign_in, browser_fixture, chromium_fixture  # noqa: F401
from tests.factories import PASSWORD
from tests.workers import _read, _wait_for

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
WEAK_BOND = "Weak bond before dosing"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium"),
]


def _screenshot(page, request, step=""):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = request.node.name + (f"-{step}" if step else "")
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


@pytest.fixture
def unlogged_session(people):
    """A preparation session the coach facilitated, ended an hour ago and not logged yet,
    at a protocol step that has the WAI-SR due."""
    start = timezone.now().replace(microsecond=0) - datetime.timedelta(hours=2)
    session = session_services.session_book(
        actor=people.admin,
        program=people.enrolment.program,
        enrolment=people.enrolment,
        kind="preparation",
        start=start,
        end=start + datetime.timedelta(hours=1),
        facilitators=[people.coach],
    )
    step = ProtocolStep.objects.filter(instruments_due__contains=["wai-sr"]).first()
    assert step is not None, "no shipped protocol step has the WAI-SR due"
    Session.objects.filter(pk=session.pk).update(protocol_step=step)
    session.refresh_from_db()
    return session


def test_a_coach_logs_a_session_enters_a_weak_wai_sr_and_sees_the_flag(
    browser, live_server, people, unlogged_session, dosing_in, start_worker, request
):
    dosing_in(5)
    _, log = start_worker("worker")
    page = _page(browser, viewport={"width": 1280, "height": 900})
    _sign_in(page, live_server, people.coach)

    # The caseload: the patient, no flag yet, and the session waiting for its log.
    expect(page.get_by_role("heading", name="My caseload")).to_be_visible()
    row = page.get_by_role("row", name=re.compile(people.patient.full_name))
    expect(row).to_be_visible()
    expect(row.get_by_role("link", name=WEAK_BOND)).to_have_count(0)
    waiting = page.get_by_role("region", name="Sessions waiting for your log")
    expect(waiting).to_contain_text(people.patient.full_name)
    waiting.get_by_role("link", name="Log session").click()

    # The log form: completed, an hour.
    expect(page.get_by_role("heading", name="Log session")).to_be_visible()
    page.get_by_role("radio", name="Completed").check()
    page.get_by_label("Duration (minutes)").fill("60")
    page.get_by_role("button", name="Save session log").click()
    expect(page.get_by_role("status").filter(has_text="Session logged.")).to_be_visible()
    assert page.url.endswith(reverse("session_detail", args=[unlogged_session.public_id]))

    # The WAI-SR due after the session, with a weak bond.
    page.get_by_role("link", name="Enter WAI-SR").click()
    for number in range(1, 13):
        answer = 2 if number in (3, 5, 7, 9) else 4
        item = page.get_by_role("group", name=re.compile(rf"^{number}\. "))
        item.get_by_role("radio", name=re.compile(rf"^{answer} ")).check()
    _screenshot(page, request, "wai-sr")
    page.get_by_role("button", name="Save answers").click()
    expect(page.get_by_role("status").filter(has_text="WAI-SR saved.")).to_be_visible()
    assert page.get_by_role("row", name="Bond").inner_text().split()[1] == "2"

    # Back on the caseload, the worker's flag appears within seconds; reload until it does.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Caseload").click()
    expect(page.get_by_role("region", name="Sessions waiting for your log")).to_have_count(0)
    badge = page.get_by_role("row", name=re.compile(people.patient.full_name)).get_by_role(
        "link", name=WEAK_BOND
    )

    def flag_shown():
        page.reload()
        return badge.count() == 1

    _wait_for(
        flag_shown, seconds=20, what=lambda: "the weak-bond badge; worker log:\n" + _read(log)
    )
    expect(badge).to_be_visible()
    _screenshot(page, request)

    response = Response.objects.get()
    assert response.session_id == unlogged_session.pk
    flag = Flag.objects.get(patient=people.patient, kind="weak_bond")
    assert flag.status == "open" and flag.evidence["bond"] == 2.0
    unlogged_session.refresh_from_db()
    assert unlogged_session.status == Session.Status.COMPLETED
    assert page.problems == []


def _record(people, code, answers, when):
    return outcome_services.response_record(
        actor=people.clinician,
        patient=people.patient,
        version=outcome_services.latest_version(code),
        answers=answers,
        administered_at=when,
        session=None,
    )


@pytest.fixture
def dashboard_data(people, rate, dosing_in):
    """WAI-SR ratings, two PHQ-9s, a past dosing with its MEQ-30, PIQ and EBI, and a dosing
    ahead: something for each of the dashboard's three charts."""
    now = timezone.now()
    for bond, days_ago in ((4, 30), (3, 20), (2, 10)):
        rate(bond, days_ago=days_ago)
    phq = {n: 2 for n in range(1, 9)} | {9: 0}  # item 9 (self-harm) 0: no safety flag
    _record(people, "phq-9", phq, now - datetime.timedelta(days=35))
    _record(people, "phq-9", {n: 0 for n in range(1, 10)}, now - datetime.timedelta(days=2))
    dosing = dosing_in(-7)
    after = dosing.scheduled_end + datetime.timedelta(hours=1)
    _record(people, "meq-30", {n: 4 for n in range(1, 31)}, after)
    _record(people, "piq", {n: 3 for n in range(1, 24)}, after)
    _record(people, "ebi", {n: 70 for n in range(1, 7)}, after)
    dosing_in(5)


def test_a_clinician_sees_every_dashboard_chart_drawn_without_errors(
    browser, live_server, people, dashboard_data, request
):
    page = _page(browser, viewport={"width": 1280, "height": 900})
    _sign_in(page, live_server, people.clinician)
    page.goto(live_server.url + reverse("patient_dashboard", args=[people.patient.public_id]))
    expect(
        page.get_by_role("heading", name=f"{people.patient.full_name}: dashboard")
    ).to_be_visible()

    charts = page.locator(".js-chart")
    expect(charts).to_have_count(3)
    for index in range(3):
        expect(charts.nth(index)).to_have_attribute("data-rendered", "true", timeout=15_000)
        expect(charts.nth(index).locator(".main-svg").first).to_be_attached()
    assert page.locator(".js-chart .main-svg").count() >= 3
    for caption in (
        "Table: WAI-SR ratings",
        "Table: Depression scores",
        "Table: Acute experience per dosing",
    ):
        expect(page.get_by_text(caption)).to_have_count(1)
    # The tables hold the same numbers: the PHQ-9 baseline total, 16.
    page.get_by_text("Table: Depression scores").click()
    expect(page.get_by_role("row", name=re.compile(r"PHQ-9 16\b"))).to_be_visible()
    _screenshot(page, request)
    assert page.problems == []


def test_the_alliance_and_depression_charts_show_follow_ups_on_request(
    browser, live_server, people, dashboard_data, request
):
    from tests.helpers import book_session

    follow_up = book_session(
        people.enrolment, actor=people.admin, kind="follow_up", hours_from_now=24 * 90
    )
    page = _page(browser, viewport={"width": 1280, "height": 900})
    _sign_in(page, live_server, people.clinician)
    page.goto(live_server.url + reverse("patient_dashboard", args=[people.patient.public_id]))
    shared = page.locator(".js-chart[data-span-all]")
    expect(shared).to_have_count(2)
    for index in range(2):
        expect(shared.nth(index)).to_have_attribute("data-rendered", "true", timeout=15_000)
    ends = "[...document.querySelectorAll('.js-chart[data-span-all]')]"
    ends += ".map(e => e.layout.xaxis.range[1].slice(0, 10))"
    follow_up_day = timezone.localtime(follow_up.scheduled_start).date().isoformat()
    before = page.evaluate(ends)
    assert before[0] == before[1] and before[0] < follow_up_day  # the treatment period, alike
    page.get_by_label(re.compile("Show follow-ups")).check()
    page.wait_for_function(f"{ends}.every(end => end > '{follow_up_day}')", timeout=5_000)
    _screenshot(page, request)
    assert page.problems == []


def test_on_a_phone_no_chart_legend_outgrows_its_plot(
    browser, live_server, people, dashboard_data, request
):
    page = _page(browser, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    _sign_in(page, live_server, people.clinician)
    page.goto(live_server.url + reverse("patient_dashboard", args=[people.patient.public_id]))
    charts = page.locator(".js-chart")
    expect(charts).to_have_count(3)
    for index in range(3):
        expect(charts.nth(index)).to_have_attribute("data-rendered", "true", timeout=15_000)
    sizes = page.evaluate(
        "[...document.querySelectorAll('.js-chart')].map(chart => ({"
        " legend: chart.querySelector('.legend').getBoundingClientRect().height,"
        " plot: chart.querySelector('.draglayer .nsewdrag').getBoundingClientRect().height,"
        " rows: new Set([...chart.querySelectorAll('.legend .traces')]"
        "   .map(entry => Math.round(entry.getBoundingClientRect().top))).size,"
        " entries: chart.querySelectorAll('.legend .traces').length }))"
    )
    for size in sizes:
        assert size["legend"] < size["plot"], sizes
    alliance = sizes[0]
    assert alliance["rows"] < alliance["entries"], sizes  # short names sit two a line
    _screenshot(page, request)
    assert page.problems == []


def test_another_coachs_patient_is_not_found(browser, live_server, people, request):
    page = _page(browser, viewport={"width": 1024, "height": 768})
    _sign_in(page, live_server, people.other_coach)
    missing = uuid.uuid4()
    bodies = {}
    for name in ("patient_detail", "patient_dashboard"):
        for label, public_id in (("patient", people.patient.public_id), ("missing", missing)):
            response = page.goto(live_server.url + reverse(name, args=[public_id]))
            assert response.status == 404, (name, label)
            expect(page.get_by_role("heading", name="Not found")).to_be_visible()
            expect(page.get_by_text("not part of your caseload")).to_be_visible()
            body = response.body()
            assert people.patient.last_name.encode() not in body
            # The sign-out form's CSRF token is masked afresh on every response.
            bodies[name, label] = re.sub(rb'value="[A-Za-z0-9]{64}"', b'value=""', body)
        _screenshot(page, request, name)
        assert bodies[name, "patient"] == bodies[name, "missing"], name
    # Chromium logs each 404 document as a failed resource; nothing else may appear.
    assert len(page.problems) == 4, page.problems
    assert all("status of 404" in problem for problem in page.problems), page.problems


def test_choosing_an_analytics_cell_draws_its_scatter_plot(browser, live_server, request):
    call_command("seed_demo", patients=2, alumni=6, seed=5, stdout=io.StringIO())
    clinician = User.objects.get(email="clinician1@rapport.test")
    clinician.set_password(PASSWORD)  # the sign-in helper's password, not the demo one
    clinician.save()
    page = _page(browser, viewport={"width": 1280, "height": 900})
    _sign_in(page, live_server, clinician)
    page.goto(live_server.url + reverse("cohort_analytics"))
    scatter = page.locator("#scatter-chart")
    # It opens on the study's headline pair: preparation bond against depression at 4 weeks.
    expect(scatter).to_have_attribute("data-shown-cell", "prep-1-0", timeout=15_000)
    expect(page.locator("#scatter-summary")).to_contain_text(
        "Preparation alliance: bond against GRID-HAMD-17 at 4 weeks: r = "
    )
    points = scatter.locator(".scatterlayer .point")
    assert points.count() >= 5
    # The points and the least-squares line through them.
    expect(scatter.locator(".scatterlayer .trace")).to_have_count(2)
    outline = "(id) => getComputedStyle(document.querySelector(`button[data-cell='${id}']`)"
    outline += ".closest('td')).outlineStyle"
    assert page.evaluate(outline, "prep-1-0") == "solid"  # the cell shown is marked
    # A keyboard user reaches another cell and chooses it with Enter.
    cell = page.locator("button[data-cell='acute-0-0']")
    cell.focus()
    page.keyboard.press("Enter")
    expect(scatter).to_have_attribute("data-shown-cell", "acute-0-0")
    expect(cell).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#scatter-summary")).to_contain_text("Peak PIQ against")
    assert page.evaluate(outline, "acute-0-0") == "solid"
    assert page.evaluate(outline, "prep-1-0") == "none"
    _screenshot(page, request)
    assert page.problems == []


def test_the_supervision_funnel_and_the_report_charts_draw_under_the_csp(
    browser, live_server, people, clinic_of_coaches, request
):
    page = _page(browser, viewport={"width": 1280, "height": 900})
    _sign_in(page, live_server, people.clinician)
    page.goto(live_server.url + reverse("supervision"))
    expect(page.get_by_role("heading", name="Read this first")).to_be_visible()
    funnel = page.locator(".js-chart")
    expect(funnel).to_have_count(1)
    expect(funnel).to_have_attribute("data-rendered", "true", timeout=15_000)
    assert funnel.locator(".scatterlayer .point").count() >= 3  # Ana, Ben, Cat (not Dee)
    _screenshot(page, request, "supervision")
    page.goto(live_server.url + reverse("program_report"))
    expect(page.get_by_role("heading", name="Program outcome report")).to_be_visible()
    expect(page.get_by_role("link", name="Download PDF")).to_be_visible()
    _screenshot(page, request, "report")
    assert page.problems == []


def test_the_dashboard_draws_the_expected_band(
    browser, live_server, people, program_with_history, request
):
    from alliance import trajectories

    from .conftest import preparations, rate_at

    enrolment, _ = program_with_history
    rate_at(people, people.patient, preparations(enrolment)[0], 3.5)
    trajectories.recompute_expected_bands()
    page = _page(browser, viewport={"width": 1280, "height": 900})
    _sign_in(page, live_server, people.coach)
    page.goto(live_server.url + reverse("patient_dashboard", args=[people.patient.public_id]))
    alliance = page.locator(".js-chart").first
    expect(alliance).to_have_attribute("data-rendered", "true", timeout=15_000)
    expect(alliance.locator(".legendtext", has_text="10th to 25th percentile")).to_have_count(1)
    _screenshot(page, request)
    assert page.problems == []
