"""Supervision on a synthetic clinic whose truth is known: coach C's patients were generated
with a bond a whole point lower than everyone else's."""

import datetime

import numpy as np
from django.urls import reverse
from django.utils import timezone

from alliance import supervision
from alliance.models import Flag
from sessions.models import SessionKind
from tests.factories import UserFactory
from tests.helpers import book_session, log_dosing_completed

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


def test_dosings_with_an_open_flag_and_response_at_4_weeks_count_the_coachs_led_patients(
    people,
):
    from clinic.models import CoachAssignment
    from clinic.roles import Role
    from outcomes import services as outcome_services
    from tests.factories import CoachAssignmentFactory, EnrolmentFactory

    from .test_reports import hamd_answers

    eve = UserFactory(role=Role.COACH, display_name="Eve")
    now = timezone.now().replace(microsecond=0)
    # (HAMD baseline, at 4 weeks, flag at the dosing): by hand, 2/5 dosings went ahead with
    # an open alliance flag, response 3/5 (>= 50% drop), remission 1/5 (<= 7).
    cases = [
        (20, 8, "open"),
        (20, 10, "open"),
        (24, 13, "resolved before"),  # -46%: no response
        (18, 6, None),
        (16, 12, None),
    ]
    for index, (baseline, later, flag) in enumerate(cases):
        enrolment = EnrolmentFactory(enrolled_by=people.admin)
        CoachAssignmentFactory(
            enrolment=enrolment,
            coach=eve,
            assigned_by=people.admin,
            role=CoachAssignment.Role.LEAD,
        )
        start = now - datetime.timedelta(days=45, hours=index)
        dosing = book_session(
            enrolment, actor=people.admin, kind=SessionKind.DOSING, start=start, minutes=360
        )
        log_dosing_completed(dosing, actor=people.admin, minutes=360)
        for total, at in (
            (baseline, start - datetime.timedelta(days=5)),
            (later, start + datetime.timedelta(days=28)),
        ):
            outcome_services.response_record(
                actor=people.admin,
                patient=enrolment.patient,
                version=outcome_services.latest_version("grid-hamd-17"),
                answers=hamd_answers(total),
                administered_at=at,
            )
        if flag:
            raised = start - datetime.timedelta(days=2)
            resolved = start - datetime.timedelta(days=1) if flag != "open" else None
            Flag.objects.create(
                patient=enrolment.patient,
                kind=Flag.Kind.WEAK_BOND,
                severity=Flag.Severity.MEDIUM,
                raised_at=raised,
                status=Flag.Status.RESOLVED if resolved else Flag.Status.OPEN,
                resolved_at=resolved,
                resolution_note="Extra preparation call." if resolved else "",
            )
    page = supervision.supervision_for(user=people.clinician)
    row = _row(page, "Eve")
    assert page.outcome_measure == "GRID-HAMD-17 at 4 weeks"
    assert (row.dosings_with_open_flag.count, row.dosings_with_open_flag.n) == (2, 5)
    assert (row.response.count, row.response.n) == (3, 5)
    assert (row.remission.count, row.remission.n) == (1, 5)
    # No ratings name Eve, so her row is "not enough data" on the page, numbers or not.
    assert not row.enough
