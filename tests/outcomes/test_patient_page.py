"""The patient's own questionnaire page: titles in the patient's words (no "version 3"), and
the clinic's configured crisis contact leading the page."""

import re

import pytest
from django.core.cache import cache
from django.urls import reverse

from outcomes import links
from outcomes.forms import patient_title

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_guess_counter():
    cache.clear()
    yield
    cache.clear()


def _open(client, people, instruments):
    _link, token = links.link_create(
        actor=people.coach, patient=people.patient, instruments=instruments
    )
    return client.get(reverse("link_open", args=[token]), follow=True).content.decode()


@pytest.mark.shifted_clock
def test_the_patient_sees_plain_titles_not_instrument_versions(client, people):
    page = _open(client, people, ["srs", "wai-sr", "qids-sr-16"])
    legends = re.findall(r"<legend[^>]*>\s*([^<]+?)\s*</legend>", page)
    titles = [legend for legend in legends if not re.match(r"\d+\.", legend)]  # not items
    assert titles == [
        "About today's session",
        "Working with your care team",
        "Your mood, sleep and energy",
    ]
    for staff_name in ("version 3", "(16 items)", "Session Rating Scale", "Short Revised"):
        assert staff_name not in page


def test_staff_entering_answers_still_see_the_instruments_full_name(client_for, people):
    url = reverse("response_new", args=[people.patient.public_id, "srs"])
    page = client_for(people.coach).get(url).content.decode()
    assert "Session Rating Scale (version 3)" in page


def test_an_instrument_without_a_patient_title_loses_its_brackets():
    assert patient_title({"code": "new-scale", "name": "New Scale (version 2)"}) == "New Scale"
    assert patient_title({"code": "srs", "name": "Session Rating Scale (version 3)"}) == (
        "About today's session"
    )


@pytest.mark.shifted_clock
def test_the_clinics_own_crisis_number_leads_the_page(client, people, settings):
    settings.CLINIC_CRISIS_CONTACT = "In a crisis, call the clinic's line on 0800 555 0199."
    page = _open(client, people, ["srs"])
    notice = page[page.index("crisis-notice") : page.index("<h1")]
    assert "0800 555 0199" in notice and "fs-5" in notice
