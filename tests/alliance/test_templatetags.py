"""The WAI-SR score page compares the bond with the weak-bond threshold that applies."""

import html
import re

import pytest
from django.urls import reverse

from alliance.models import FlagRule
from tests.alliance.conftest import wai_answers

pytestmark = pytest.mark.django_db


def _text(client, response) -> str:
    page = client.get(reverse("response_detail", args=[response.public_id])).content.decode()
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def test_a_weak_bond_is_shown_below_the_clinic_default(client, people, rate):
    response = rate(bond=3)  # bond items 3, 3, 3, 3 -> mean 3
    client.force_login(people.coach)
    text = _text(client, response)
    assert "Bond 3 mean: below the weak-bond threshold of 3.5 (clinic default)." in text


def test_the_patients_program_threshold_applies(client, people, rate):
    FlagRule.objects.create(program=people.enrolment.program, weak_bond_below=4.25)
    response = rate(bond=4)
    client.force_login(people.clinician)
    assert "Bond 4 mean: below the weak-bond threshold of 4.25 (this patient's program)." in (
        _text(client, response)
    )


def test_without_any_rule_the_threshold_is_3_5(client, people, rate):
    FlagRule.objects.all().delete()
    response = rate(bond=4)
    client.force_login(people.clinician)
    assert "Bond 4 mean: not below the weak-bond threshold of 3.5 (default)." in (
        _text(client, response)
    )


def test_a_prorated_bond_says_so_and_other_questionnaires_have_no_bond_line(client, people, rate):
    answers = wai_answers(4) | {9: None}
    response = rate(bond=None, answers=answers)
    srs = rate(bond=None, code="srs", answers={1: 9, 2: 9, 3: 9, 4: 9})
    client.force_login(people.clinician)
    assert "Bond 4 mean (prorated): not below the weak-bond threshold" in _text(client, response)
    assert "weak-bond threshold" not in _text(client, srs)
