"""Real Chromium on a tablet-sized screen in the room of a ketamine dosing: the facilitator
records pre-dose, +40 min and pre-discharge vital signs, a MOAA/S sedation score and a mild
adverse event; discharge is refused before the minimum observation time, then given; the
session's timeline and the patient's dashboard show it all. Run with `-m browser`."""

import datetime
import re
import shutil

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from sessions.models import AdverseEvent, Discharge, VitalSigns
from tests.browser import _page, _sign_in, browser_fixture, chromium_fixture  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium"),
]
TABLET = {"width": 820, "height": 1180}


def _record_vitals(page, *, point, systolic, diastolic, heart_rate, spo2, measured_at=None):
    page.get_by_role("link", name="Record vital signs").click()
    expect(page.get_by_role("heading", name="Vital signs")).to_be_visible()
    page.get_by_label("Observation point").select_option(label=point)
    if measured_at is not None:
        page.get_by_label("Measured at").fill(f"{timezone.localtime(measured_at):%Y-%m-%dT%H:%M}")
    page.get_by_label("Systolic (mmHg)").fill(str(systolic))
    page.get_by_label("Diastolic (mmHg)").fill(str(diastolic))
    page.get_by_label("Heart rate (/min)").fill(str(heart_rate))
    page.get_by_label("SpO₂ (%)").fill(str(spo2))
    page.get_by_role("button", name="Save vital signs").click()
    expect(page.get_by_role("status").filter(has_text="Vital signs saved.")).to_be_visible()


def _rate_sedation(page, live_server, people, dosing, score):
    url = reverse("response_new", args=[people.patient.public_id, "moaa-s"])
    page.goto(f"{live_server.url}{url}?session={dosing.public_id}")
    item = page.get_by_role("group", name=re.compile(r"^1\. "))
    item.get_by_role("radio", name=re.compile(rf"^{score} ")).check()
    page.get_by_role("button", name="Save answers").click()
    expect(page.get_by_role("status").filter(has_text="saved")).to_be_visible()
    page.goto(live_server.url + reverse("session_detail", args=[dosing.public_id]))


def test_a_ketamine_dosing_day_on_a_tablet(browser, live_server, people, ketamine_dosing):
    dosing = ketamine_dosing(45)
    page = _page(browser, viewport=TABLET, has_touch=True, is_mobile=True)
    _sign_in(page, live_server, people.coach)
    page.goto(live_server.url + reverse("session_detail", args=[dosing.public_id]))
    expect(page.get_by_role("heading", name="Dosing day", exact=True)).to_be_visible()

    # Pre-dose (typed in now, measured before the dose), +40 min, a sedation score.
    before_dose = dosing.actual_start - datetime.timedelta(minutes=10)
    _record_vitals(
        page,
        point="Before the dose",
        systolic=132,
        diastolic=84,
        heart_rate=76,
        spo2=98,
        measured_at=before_dose,
    )
    _record_vitals(page, point="+40 min", systolic=138, diastolic=86, heart_rate=80, spo2=97)
    _rate_sedation(page, live_server, people, dosing, 4)

    # A mild adverse event.
    page.get_by_role("link", name="Record adverse event").click()
    page.get_by_label("Description").fill("Nausea about 30 minutes after the dose")
    page.get_by_role("radio", name="Mild").check()
    page.get_by_label("Related to the treatment").select_option(label="Probable")
    page.get_by_label("Action taken").fill("Ondansetron 4 mg")
    page.get_by_role("button", name="Record adverse event").click()
    expect(page.get_by_role("status").filter(has_text="Adverse event recorded.")).to_be_visible()

    # Pre-discharge vitals; discharge is refused: 120 minutes have not passed.
    _record_vitals(
        page, point="Before discharge", systolic=128, diastolic=82, heart_rate=72, spo2=98
    )
    page.get_by_role("link", name="Discharge", exact=True).click()
    page.get_by_label("Escort or transport home").fill("Partner drives her home")
    page.get_by_role("button", name="Record discharge").click()
    expect(page.get_by_text(re.compile("minimum observation time of 120 minutes"))).to_have_count(
        2  # in the check above the form and in the form's own message
    )
    assert not Discharge.objects.exists()

    # An hour and a quarter later: alert again, the check passes, discharged.
    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=80), tick=True):
        _rate_sedation(page, live_server, people, dosing, 5)
        page.get_by_role("link", name="Discharge", exact=True).click()
        expect(page.get_by_text("sedation resolved")).to_be_visible()
        page.get_by_label("Escort or transport home").fill("Partner drives her home")
        page.get_by_role("button", name="Record discharge").click()
        expect(page.get_by_role("status").filter(has_text="Discharge recorded.")).to_be_visible()

        timeline = page.get_by_role("list", name="Dosing day timeline")
        for text in (
            "Dose given",
            "Before the dose",
            "+40 min",
            "MOAA/S sedation",
            "Adverse event",
            "Before discharge",
            "Discharged",
        ):
            expect(timeline).to_contain_text(text)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

        page.goto(live_server.url + reverse("patient_dashboard", args=[people.patient.public_id]))
        vitals = page.get_by_role("region", name="Vital signs and adverse events")
        expect(vitals.locator(".js-chart")).to_be_visible()
        vitals.get_by_text("Table: Adverse events").click()
        expect(vitals).to_contain_text("Nausea about 30 minutes after the dose")
        vitals.get_by_text("Table: Vital signs on dosing days").click()
        expect(vitals).to_contain_text("138/86")

    assert VitalSigns.objects.count() == 3
    assert AdverseEvent.objects.get().grade == "mild"
    discharge = Discharge.objects.get()
    assert not discharge.is_override and discharge.sedation_resolved
    assert page.problems == []
