"""Supervision on a synthetic clinic whose truth is known: coach C's patients were generated
with a bond a whole point lower than everyone else's."""

import datetime

import numpy as np
from django.urls import reverse

from alliance import supervision
from alliance.models import Flag
from tests.factories import UserFactory

from .conftest import RATINGS_PER_PATIENT, TRUTH


def _row(page, name):
    return next(row for row in page.rows if row.name == name)


def test_the_multilevel_estimate_puts_the_low_bond_coach_below_the_clinic_mean(
    people, clinic_of_coaches
):
    page = supervision.supervision_for(user=people.clinician)
    assert page.model.converged, page.model.note
    cat = _row(page, "Cat")
    patients, _ = TRUTH["Cat"]
    assert cat.enough and cat.patients == patients
    assert cat.ratings == patients * RATINGS_PER_PATIENT
    # The truth: a whole point below the others. The interval must exclude the clinic mean.
    assert cat.effect.effect < -0.4
    assert cat.effect.high < 0 and cat.effect.below_clinic
    for name in ("Ana", "Ben"):
        assert _row(page, name).effect.low < _row(page, name).effect.effect
        assert not _row(page, name).effect.below_clinic
    # Shrinkage: Dee's two patients are pulled toward the clinic mean, not ranked on their raw
    # mean; and the page shows "not enough data" instead of Dee's numbers.
    dee = _row(page, "Dee")
    assert not dee.enough and dee.patients == 2
    raw = np.mean([r.bond for r in supervision._ratings(None)[0] if r.coach_id == dee.coach_id])
    clinic_raw = np.mean([r.bond for r in supervision._ratings(None)[0]])
    assert abs(dee.effect.effect) < abs(raw - clinic_raw)
    # Mean bond at the last preparation: each of Cat's 8 patients once, with a t interval.
    assert cat.last_preparation.n == 8
    assert cat.last_preparation.low < cat.last_preparation.estimate < cat.last_preparation.high
    assert 0 < page.model.icc < 1
    print(
        f"\nCat effect {cat.effect.effect:.3f} [{cat.effect.low:.3f}, {cat.effect.high:.3f}]; "
        f"clinic mean {page.model.clinic_mean:.3f}; ICC {page.model.icc:.3f}"
    )


def test_the_page_says_not_enough_data_for_a_coach_with_two_patients(
    people, clinic_of_coaches, client_for
):
    page = client_for(people.clinician).get(reverse("supervision"))
    html = page.content.decode()
    assert page.status_code == 200
    assert "not a performance score" in html
    dee_row = html[html.index('scope="row">Dee<') :].split("</tr>")[0]
    assert "Not enough data (n = 2 patients; at least 5 needed)" in dee_row
    cat_row = html[html.index('scope="row">Cat<') :].split("</tr>")[0]
    assert "below the clinic mean" in cat_row
    assert "Funnel plot" in html
    # A filter that leaves one coach below the minimum: still no number for them.
    dee = clinic_of_coaches["Dee"]
    filtered = client_for(people.clinician).get(reverse("supervision"), {"coach": dee.pk})
    body = filtered.content.decode()
    assert "Not enough data (n = 2 patients" in body and 'scope="row">Cat<' not in body


def test_a_coach_sees_only_their_own_numbers_and_others_are_refused(
    people, clinic_of_coaches, client_for, client
):
    cat = clinic_of_coaches["Cat"]
    html = client_for(cat).get(reverse("supervision"), {"coach": clinic_of_coaches["Ana"].pk})
    body = html.content.decode()
    assert 'scope="row">Cat<' in body and ">Ana<" not in body and ">Ben<" not in body
    assert 'name="coach"' not in body  # no filter for a coach
    client.logout()
    assert client.get(reverse("supervision")).status_code == 302  # to the login page
    nobody = UserFactory(display_name="No Role")
    assert client_for(nobody).get(reverse("supervision")).status_code == 403


def test_a_dosing_that_went_ahead_with_an_open_alliance_flag_is_counted(people):
    start = datetime.datetime(2026, 3, 1, 9, tzinfo=datetime.UTC)
    hour = datetime.timedelta(hours=1)
    assert supervision._flag_open_at([(start - hour, None)], start)
    assert supervision._flag_open_at([(start - hour, start + hour)], start)
    assert not supervision._flag_open_at([(start - 2 * hour, start - hour)], start)
    assert not supervision._flag_open_at([(start + hour, None)], start)
    assert Flag.Kind.OFF_TRACK in supervision.ALLIANCE_KINDS


def test_a_model_with_one_coach_says_so_and_estimates_nothing():
    at = datetime.datetime(2026, 3, 1, 9, tzinfo=datetime.UTC)
    ratings = [
        supervision.Rating(i, i % 4, 1, 3.0 + (i % 3) * 0.25, "x", at, True) for i in range(12)
    ]
    model = supervision.fit_coach_model(ratings)
    assert not model.converged and model.effects == {}
    assert "Too few coaches" in model.note
