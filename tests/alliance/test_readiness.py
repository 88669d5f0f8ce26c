"""One readiness for a dosing, shown the same on the caseload, the program page, the dosing
page and "Mark ready" (DESIGN §5)."""

import datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from alliance import caseload, readiness, services
from alliance.models import DosingSignOff, Flag
from clinic.models import AuditEvent
from sessions import services as session_services
from sessions.models import SessionKind
from tests.factories import ProgramFactory, protocol_named

pytestmark = pytest.mark.django_db

NOW = datetime.datetime(2026, 3, 12, 12, 0, tzinfo=datetime.UTC)


# --- the pure answer ----------------------------------------------------------------------


def facts(**overrides) -> readiness.DosingFacts:
    """A dosing with nothing wrong: a good bond, preparations done, people and dose set."""
    values = {
        "latest_bond": 4.25,
        "latest_bond_response_id": 7,
        "latest_bond_at": NOW - datetime.timedelta(days=1),
        "preparations_done": 3,
        "preparations_required": 3,
        "facilitators": 1,
        "dose_recorded": True,
    }
    return readiness.DosingFacts(**{**values, **overrides})


def test_nothing_wrong_is_ready():
    answer = readiness.assess(facts())
    assert (answer.state, answer.label, answer.risks) == ("ready", "Ready", [])


def test_no_bond_rating_alone_is_not_measured_and_with_other_risks_at_risk():
    assert readiness.assess(facts(latest_bond=None)).state == "not measured"
    answer = readiness.assess(facts(latest_bond=None, facilitators=0))
    assert answer.state == "at risk"
    assert [r.text for r in answer.risks] == [
        "No WAI-SR bond rating yet.",
        "No facilitator is assigned.",
    ]


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"latest_bond": 3.25}, "Latest bond 3.25 (mean, 11 Mar) is below the program's"),
        (
            {"latest_bond": 3.75, "clinic_percentile": 90, "clinic_percentile_value": 4.1},
            "below the clinic's 90th percentile (4.10)",
        ),
        ({"preparations_done": 1}, "Only 1 of the protocol's 3 preparation sessions"),
        (
            {
                "unanswered_after_preparation": ["WAI-SR"],
                "last_preparation_id": 5,
                "last_preparation_label": "Preparation 3 on 10 Mar",
            },
            "Not answered after Preparation 3 on 10 Mar: WAI-SR.",
        ),
        ({"facilitators": 0}, "No facilitator is assigned."),
        ({"dose_recorded": False}, "No dose is recorded"),
        (
            {
                "open_flags": [
                    readiness.FlagFact("f1", "safety", "Safety", "PHQ-9 item 9 answered 2")
                ]
            },
            "Open flag: Safety. PHQ-9 item 9 answered 2",
        ),
    ],
)
def test_each_risk_puts_the_dosing_at_risk_in_words(overrides, words):
    answer = readiness.assess(facts(**overrides))
    assert answer.state == "at risk"
    assert any(words in r.text for r in answer.risks), [r.text for r in answer.risks]


def test_facilitator_and_dose_count_only_once_they_are_due():
    answer = readiness.assess(facts(facilitators=0, dose_recorded=False, logistics_due=False))
    assert answer.state == "ready"


def test_a_resolved_flag_that_still_holds_reads_at_risk_resolved_with_who_and_why():
    resolved = readiness.FlagFact(
        "f2", "weak_bond", "Weak bond before dosing", "Bond 2.5", "Cyd Clinician", "Extra prep"
    )
    answer = readiness.assess(facts(latest_bond=2.5, resolved_flags_still_applying=[resolved]))
    assert answer.state == "at risk"
    assert answer.label == "At risk — resolved"
    assert "resolved by Cyd Clinician: Extra prep" in answer.risks[0].text
    # The resolved flag stands for the weak bond: the bond is not listed twice.
    assert len(answer.risks) == 1


def test_a_sign_off_covers_the_risks_it_listed_and_no_new_one():
    at_risk = facts(facilitators=0)
    keys = readiness.assess(at_risk).risk_keys
    sign_off = readiness.SignOff(by="Cyd", at=NOW, note="Facilitator confirmed", risk_keys=keys)
    assert readiness.assess(facts(facilitators=0, sign_off=sign_off)).state == (
        "confirmed despite risks"
    )
    worse = readiness.assess(facts(facilitators=0, dose_recorded=False, sign_off=sign_off))
    assert worse.state == "at risk"


# --- from the database --------------------------------------------------------------------


@pytest.fixture
def dosing_ready_but_for_the_bond(people, dosing_in):
    """A dosing tomorrow with a facilitator and a dose; the program asks no preparations."""
    dosing = dosing_in(1)
    dosing.facilitators.add(people.coach)
    session_services.dosing_record(
        actor=people.clinician,
        session=dosing,
        substance="psilocybin",
        dose_mg=Decimal("25"),
        route="oral",
    )
    return dosing


def _readiness(dosing):
    return caseload.readiness_of(dosing)


@pytest.mark.shifted_clock
def test_resolving_a_weak_bond_flag_leaves_the_dosing_at_risk_until_a_better_rating(
    people, rate, dosing_ready_but_for_the_bond, client
):
    dosing = dosing_ready_but_for_the_bond
    bond_2_5 = {n: (2 if n in (3, 5) else 3 if n in (7, 9) else 4) for n in range(1, 13)}
    rate(bond=None, answers=bond_2_5)
    services.recompute_patient(patient_id=people.patient.pk)
    flag = Flag.objects.get(kind="weak_bond")
    services.flag_resolve(actor=people.clinician, flag=flag, note="Extra preparation booked")
    services.recompute_patient(patient_id=people.patient.pk)  # the same rating: still weak

    answer = _readiness(dosing)
    assert answer.label == "At risk — resolved"
    assert not Flag.objects.filter(status__in=Flag.UNRESOLVED).exists()
    client.force_login(people.clinician)
    for page in (
        reverse("home"),
        reverse("session_detail", args=[dosing.public_id]),
        reverse("session_ready", args=[dosing.public_id]),
    ):
        html = client.get(page).content.decode()
        assert "At risk — resolved" in html, page
        assert "resolved by Cyd Clinician: Extra preparation booked" in html, page

    rate(bond=5, days_ago=0)
    services.recompute_patient(patient_id=people.patient.pk)
    assert _readiness(dosing).state == "ready"
    flag.refresh_from_db()
    assert flag.still_applies is False


@pytest.mark.shifted_clock
def test_program_dashboard_shows_the_same_readiness(people, rate, dosing_in, client):
    program = people.enrolment.program
    dosing_in(3)
    rate(bond=2)
    services.recompute_patient(patient_id=people.patient.pk)
    client.force_login(people.clinician)
    html = client.get(reverse("program_sessions", args=[program.pk])).content.decode()
    assert "At risk" in html
    assert "Open flag: Weak bond before dosing" in html


@pytest.mark.shifted_clock
def test_marking_ready_with_risks_needs_a_note_and_records_one_sign_off(people, rate, dosing_in):
    dosing = dosing_in(2)  # no facilitator, no dose
    rate(bond=2)
    services.recompute_patient(patient_id=people.patient.pk)
    with pytest.raises(ValidationError) as exc:
        services.dosing_sign_off(actor=people.clinician, dosing=dosing, note="  ")
    assert "despite the risks" in exc.value.message_dict["note"][0]
    assert not DosingSignOff.objects.exists()

    first = services.dosing_sign_off(actor=people.clinician, dosing=dosing, note="Seen today")
    again = services.dosing_sign_off(actor=people.clinician, dosing=dosing, note="Seen today")
    assert first == again and DosingSignOff.objects.count() == 1
    texts = [r["text"] for r in first.risks]
    assert any(t.startswith("Open flag: Weak bond before dosing") for t in texts)
    assert "No facilitator is assigned." in texts and any("No dose" in t for t in texts)
    answer = _readiness(dosing)
    assert (answer.state, answer.sign_off.note) == ("confirmed despite risks", "Seen today")
    event = AuditEvent.objects.filter(object_id=str(dosing.public_id), detail__ready__isnull=False)
    assert event.get().detail["note"] == "Seen today"


def test_mark_ready_page_lists_the_risks_and_refuses_an_empty_note(people, rate, dosing_in, client):
    dosing = dosing_in(2)
    client.force_login(people.clinician)
    url = reverse("session_ready", args=[dosing.public_id])
    page = client.get(url).content.decode()
    assert "No WAI-SR bond rating yet." in page and "No facilitator is assigned." in page
    response = client.post(url, {"note": ""})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not DosingSignOff.objects.exists()
    response = client.post(url, {"note": "Rating by phone tonight"})
    assert response.status_code == 302
    assert DosingSignOff.objects.get().signed_by == people.clinician


def test_a_coach_cannot_mark_ready(people, dosing_in, client):
    dosing = dosing_in(2)
    client.force_login(people.coach)
    assert client.get(reverse("session_ready", args=[dosing.public_id])).status_code == 403


@pytest.mark.shifted_clock
def test_too_few_preparations_and_unanswered_measures_are_risks(people):
    program = ProgramFactory(protocol=protocol_named("Psilocybin for depression, two doses"))
    from clinic import services as clinic_services

    enrolment = clinic_services.patient_enrol(
        actor=people.admin,
        patient=people.patient,
        program=program,
        start_date=timezone.localdate() + datetime.timedelta(days=1),
    )
    dosing = enrolment.sessions.filter(kind=SessionKind.DOSING).first()
    answer = _readiness(dosing)
    assert any("Only 0 of the protocol's 3 preparation sessions" in r.text for r in answer.risks)
