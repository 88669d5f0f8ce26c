"""The flag page helps act: it says why the flag has its severity, links to the rating, the
chart and the sessions, and offers admins an extra preparation session or another coach."""

import pytest
from django.urls import reverse

from alliance import services
from alliance.models import Flag
from alliance.rules import Kind, Severity
from alliance.summary import response_ids, severity_reason
from clinic.models import CoachAssignment

pytestmark = pytest.mark.django_db


@pytest.fixture
def weak_bond(people, rate, dosing_in):
    dosing = dosing_in(7)
    rating = rate(bond=2)
    services.recompute_patient(patient_id=people.patient.pk)
    return Flag.objects.get(kind="weak_bond"), rating, dosing


@pytest.mark.shifted_clock
def test_the_flag_page_says_why_high_and_links_to_rating_chart_and_dosing(
    client_for, people, weak_bond
):
    flag, rating, dosing = weak_bond
    page = client_for(people.coach).get(reverse("flag_detail", args=[flag.public_id]))
    html = page.content.decode()
    assert flag.severity == Severity.HIGH
    assert "Why high:</strong> The bond is more than 0.5 below the threshold of 3.5" in html
    assert reverse("response_detail", args=[rating.public_id]) in html
    assert reverse("patient_dashboard", args=[people.patient.public_id]) in html
    assert reverse("session_detail", args=[dosing.public_id]) in html
    # A coach may look, not rebook or reassign.
    assert "Book an extra preparation session" not in html and "Reassign coach" not in html


@pytest.mark.shifted_clock
def test_an_admin_books_an_extra_preparation_or_reassigns_the_coach_from_the_flag(
    client_for, people, weak_bond
):
    flag, _rating, _dosing = weak_bond
    client = client_for(people.admin)
    html = client.get(reverse("flag_detail", args=[flag.public_id])).content.decode()
    book = reverse("session_book", args=[people.patient.public_id, people.enrolment.pk])
    lead = CoachAssignment.objects.get(enrolment=people.enrolment, role="lead")
    assert f'href="{book}?kind=preparation"' in html
    assert reverse("assignment_reassign", args=[people.patient.public_id, lead.pk]) in html
    form = client.get(f"{book}?kind=preparation").content.decode()
    assert 'value="preparation" selected' in form and 'value="Extra preparation"' in form
    # Once resolved there is nothing left to act on.
    services.flag_resolve(actor=people.admin, flag=flag, note="Extra preparation booked.")
    html = client.get(reverse("flag_detail", args=[flag.public_id])).content.decode()
    assert "Book an extra preparation session" not in html


def test_a_weak_bond_just_under_the_threshold_or_only_under_the_percentile_is_medium():
    evidence = {"bond": 3.25, "threshold": 3.5, "percentile": 20}
    assert "by 0.5 or less" in severity_reason(Kind.WEAK_BOND, Severity.MEDIUM, evidence)
    evidence = {"bond": 3.75, "threshold": 3.5, "percentile": 20}
    assert "below the clinic's 20th percentile" in severity_reason(
        Kind.WEAK_BOND, Severity.MEDIUM, evidence
    )


def test_every_kind_of_flag_says_why_it_has_its_severity():
    evidence = {"bond": 2.0, "threshold": 3.5, "percentile": 20, "hours": 72}
    for kind in Kind:
        assert severity_reason(kind, Severity.HIGH, evidence), kind


def test_the_ratings_a_flag_names_are_found_wherever_its_evidence_keeps_them():
    evidence = {
        "reasons": [{"measure": "srs", "response_id": 7}, {"measure": "wai", "response_id": 3}],
        "response_ids": [3, 9],
        "hits": [{"item": 9, "response_id": 11}],
        "bond": 2.0,
    }
    assert response_ids(evidence) == [7, 3, 9, 11]
