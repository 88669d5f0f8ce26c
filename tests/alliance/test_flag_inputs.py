"""The flag engine's inputs read from the database: the seams between stored scores and the
pure rules, where a wrong join or a lost setting hides (the percentile was once always 20)."""

import datetime

import numpy
import pytest
from django.utils import timezone

from alliance import flag_inputs
from alliance.models import FlagRule
from outcomes import services as outcome_services
from tests.factories import EnrolmentFactory

from .conftest import wai_answers

pytestmark = pytest.mark.django_db


def _record(actor, patient, code, answers):
    return outcome_services.response_record(
        actor=actor,
        patient=patient,
        version=outcome_services.latest_version(code),
        answers=answers,
        administered_at=timezone.now() - datetime.timedelta(days=1),
    )


def test_clinic_percentiles_agree_with_numpy_over_every_bond_rating_and_nothing_else(people):
    bonds = [1, 2, 2, 3, 4, 5, 5]  # uneven, so an interpolation slip shows
    for bond in bonds:
        _record(people.admin, EnrolmentFactory().patient, "wai-sr", wai_answers(bond))
    _record(people.admin, people.patient, "srs", {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0})

    read = flag_inputs.clinic_bond_percentiles([10, 20, 90])

    for percentile in (10, 20, 90):
        value, count = read[percentile]
        assert count == len(bonds)
        assert value == pytest.approx(numpy.percentile(bonds, percentile))


def test_with_no_ratings_the_percentile_is_unknown_and_counts_none():
    assert flag_inputs.clinic_bond_percentiles([20]) == {20: (None, 0)}


def test_pages_percentiles_follow_a_new_bond_rating_at_once(people):
    _record(people.admin, EnrolmentFactory().patient, "wai-sr", wai_answers(2))
    assert flag_inputs.recent_clinic_bond_percentiles([20, 50]) == {20: (2.0, 1), 50: (2.0, 1)}

    _record(people.admin, EnrolmentFactory().patient, "wai-sr", wai_answers(4))

    read = flag_inputs.recent_clinic_bond_percentiles([20, 50])
    assert read == flag_inputs.clinic_bond_percentiles([20, 50])
    assert read[50] == (pytest.approx(3.0), 2)


def test_every_programs_percentile_and_the_default_are_read_in_the_sweep(people):
    FlagRule.objects.create(program=people.enrolment.program, percentile=35)
    assert flag_inputs.rule_percentiles() == [20, 35]
