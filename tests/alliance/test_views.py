import pytest
from django.urls import reverse

from alliance import services
from alliance.models import Flag
from tests.factories import CoachAssignmentFactory, EnrolmentFactory
from tests.helpers import assert_role_answer, matrix_cases

pytestmark = pytest.mark.django_db


@pytest.fixture
def flag(people, rate, dosing_in):
    dosing_in(7)
    rate(bond=2)
    services.recompute_patient(patient_id=people.patient.pk)
    return Flag.objects.get(kind="weak_bond")


MATRIX = {
    "flag_detail": [302, 200, 404, 200, 200],
    "patient_flags": [302, 200, 404, 200, 200],
    "flag_rule_default": [302, 403, 403, 403, 200],
}


@pytest.mark.parametrize(("page", "persona", "expected"), matrix_cases(MATRIX))
def test_role_matrix(client, people, flag, page, persona, expected):
    args = {
        "flag_detail": [flag.public_id],
        "patient_flags": [people.patient.public_id],
        "flag_rule_default": [],
    }[page]
    assert_role_answer(client, people, persona, reverse(page, args=args), expected)


def test_flag_page_says_the_evidence_in_words(client, people, flag):
    client.force_login(people.coach)
    html = client.get(reverse("flag_detail", args=[flag.public_id])).content.decode()
    assert "Bond mean 2 on " in html and "below 3.5; dosing on " in html


def test_other_coach_cannot_acknowledge(client, people, flag):
    client.force_login(people.other_coach)
    response = client.post(reverse("flag_acknowledge", args=[flag.public_id]))
    assert response.status_code == 404
    flag.refresh_from_db()
    assert flag.status == "open"


def test_coach_acknowledges_and_resolves_with_a_note(client, people, flag):
    client.force_login(people.coach)
    client.post(reverse("flag_acknowledge", args=[flag.public_id]))
    flag.refresh_from_db()
    assert flag.status == "acknowledged"
    empty = client.post(reverse("flag_resolve", args=[flag.public_id]), {"note": ""})
    assert "This field is required" in empty.content.decode()
    client.post(reverse("flag_resolve", args=[flag.public_id]), {"note": "Extra prep booked"})
    flag.refresh_from_db()
    assert (flag.status, flag.resolution_note) == ("resolved", "Extra prep booked")


def test_threshold_outside_the_range_is_refused_in_the_form(client, people):
    client.force_login(people.admin)
    url = reverse("flag_rule_default")
    form = client.get(url).content.decode()
    assert 'name="weak_bond_below"' in form
    data = {
        "weak_bond_below": 6,
        "weak_bond_days_before_dosing": 14,
        "percentile": 20,
        "percentile_min_ratings": 30,
        "bond_drop_rci": 0.5,
        "missing_hours_before_dosing": 72,
        "srs_below": 36,
        "srs_drop": 1,
        "wai_total_below": 3.5,
    }
    response = client.post(url, data)
    assert "Ensure this value is less than or equal to 5" in response.content.decode()
    assert 'value="6"' in response.content.decode()


@pytest.mark.shifted_clock
def test_caseload_lists_flagged_patients_first_with_readiness(client, people, flag):
    # A second patient of the same coach, alphabetically first, without flags.
    other = EnrolmentFactory(patient__last_name="Aaronson")
    CoachAssignmentFactory(enrolment=other, coach=people.coach)
    client.force_login(people.coach)
    html = client.get(reverse("home")).content.decode()
    assert html.index("Example") < html.index("Aaronson")
    assert "Weak bond before dosing" in html
    assert "At risk" in html


def test_trajectory_shows_change_and_reliable_change(client, people, rate, dosing_in):
    from alliance.selectors import latest_before_dosing, trajectories

    dosing = dosing_in(7)
    rate(bond=2, days_ago=10)
    rate(bond=3, days_ago=5)
    rate(bond=4, days_ago=1)
    series = trajectories(patient=people.patient)
    bond = next(t for t in series if t.scale == "bond" and t.measure == "wai-sr")
    assert [p.value for p in bond.points] == [2.0, 3.0, 4.0]
    assert [p.change_from_first for p in bond.points] == [None, 1.0, 2.0]
    assert [p.change_from_previous for p in bond.points] == [None, 1.0, 1.0]
    # RCI 0.5 on bond: a rise of 1.0 is a reliable improvement.
    assert [p.reliable_change for p in bond.points] == ["", "improved", "improved"]
    (row,) = latest_before_dosing(patient=people.patient, series=series)
    assert row["dosing"] == dosing and row["waisr_bond"].value == 4.0
    client.force_login(people.clinician)
    html = client.get(reverse("patient_flags", args=[people.patient.public_id])).content.decode()
    assert "WAI-SR bond (item mean, 1–5)" in html and "improved" in html


def test_admin_sets_thresholds_for_one_program(client, people):
    from alliance.models import FlagRule

    client.force_login(people.admin)
    url = reverse("flag_rule_program", args=[people.enrolment.program.pk])
    assert 'value="3.5"' in client.get(url).content.decode()  # starts from the default
    assert not FlagRule.objects.filter(program=people.enrolment.program).exists()
    data = {
        "weak_bond_below": 4,
        "weak_bond_days_before_dosing": 10,
        "percentile": 20,
        "percentile_min_ratings": 30,
        "bond_drop_rci": 0.5,
        "missing_hours_before_dosing": 72,
        "srs_below": 36,
        "srs_drop": 1,
        "wai_total_below": 3.5,
    }
    client.post(url, data)
    rule = FlagRule.objects.get(program=people.enrolment.program)
    assert (rule.weak_bond_below, rule.updated_by) == (4, people.admin)
    assert FlagRule.objects.get(program=None).weak_bond_below == 3.5
    assert client.get(reverse("flag_rule_program", args=[999999])).status_code == 404


@pytest.mark.shifted_clock
def test_an_open_safety_flag_puts_the_next_dosing_at_risk(client, people, rate, dosing_in):
    dosing_in(7)
    rate(bond=4)
    rate(bond=None, code="phq-9", answers={n: 0 for n in range(1, 11)} | {9: 1})
    services.recompute_patient(patient_id=people.patient.pk)
    client.force_login(people.coach)
    html = client.get(reverse("home")).content.decode()
    assert "Safety" in html and "At risk" in html
