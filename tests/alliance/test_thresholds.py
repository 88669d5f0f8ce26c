"""Every threshold a program sets acts on its patients' flags, and changing one is audited."""

import dataclasses
import datetime

import pytest
from django.core.exceptions import ValidationError

from alliance import flag_inputs, rules, selectors, services
from alliance.models import Flag, FlagRule, StalePatient
from clinic.models import AuditEvent
from tests.factories import EnrolmentFactory, PatientFactory

NOW = datetime.datetime(2026, 3, 12, 12, 0, tzinfo=datetime.UTC)
DOSING = rules.Dosing(session_id=9, start=NOW + datetime.timedelta(days=2))


def _point(rid, bond, days_ago, total=4.0):
    return rules.AlliancePoint(
        response_id=rid, at=NOW - datetime.timedelta(days=days_ago), bond=bond, total=total
    )


# Each field of FlagRule, a situation, and a value that changes what the rules decide there.
CASES = {
    "weak_bond_below": ({"alliance": [_point(1, 3.75, 1)]}, 4.0, "weak_bond"),
    "weak_bond_days_before_dosing": (
        {
            "alliance": [_point(1, 3.0, 1)],
            "dosings": [rules.Dosing(session_id=9, start=NOW + datetime.timedelta(days=20))],
        },
        21,
        "weak_bond",
    ),
    "percentile_min_ratings": (
        {"alliance": [_point(1, 4.0, 1)], "clinic_bond_percentile": 4.25},
        10,
        "weak_bond",
    ),
    "bond_drop_rci": ({"alliance": [_point(1, 4.5, 5), _point(2, 4.0, 1)]}, 0.25, "bond_drop"),
    "missing_hours_before_dosing": (
        {
            "preparations": [NOW - datetime.timedelta(days=1)],
            "dosings": [rules.Dosing(session_id=9, start=NOW + datetime.timedelta(hours=100))],
        },
        120,
        "alliance_missing",
    ),
    "srs_below": (
        {"srs": [rules.SrsPoint(response_id=3, at=NOW - datetime.timedelta(days=1), total=37)]},
        38,
        "low_alliance",
    ),
    "srs_drop": (
        {
            "srs": [
                rules.SrsPoint(response_id=3, at=NOW - datetime.timedelta(days=8), total=39.5),
                rules.SrsPoint(response_id=4, at=NOW - datetime.timedelta(days=1), total=38.5),
            ]
        },
        2.0,
        "low_alliance",
    ),
    "wai_total_below": ({"alliance": [_point(1, 4.0, 1, total=3.6)]}, 3.75, "low_alliance"),
    # Twenty earlier patients at step 7 rated 3.0 ... 4.9; this patient's 3.25 is their 15th
    # percentile: inside the default 10th, below a 20th.
    "off_track_percentile": (
        {
            "alliance": [dataclasses.replace(_point(1, 3.75, 1), bond=3.25, step_id=7)],
            "step_bands": {
                7: rules.StepBand(7, "Preparation 2", tuple(3.0 + 0.1 * i for i in range(20)))
            },
        },
        20,
        "off_track",
    ),
    # The same twenty patients but this patient at 3.0: off track once 20 are enough.
    "band_min_patients": (
        {
            "alliance": [dataclasses.replace(_point(1, 3.75, 1), bond=3.0, step_id=7)],
            "step_bands": {
                7: rules.StepBand(7, "Preparation 2", tuple(3.0 + 0.1 * i for i in range(20)))
            },
        },
        21,
        "off_track",
    ),
}


def test_every_flag_rule_field_has_a_case_here():
    # The percentile is read from the database, so its case is the recompute test below.
    assert set(CASES) | {"percentile"} == set(FlagRule.FIELDS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_threshold_changes_what_the_rules_decide(name):
    situation, value, kind = CASES[name]
    base = {"now": NOW, "dosings": [DOSING], "clinic_bond_ratings": 20, **situation}
    facts = rules.Facts(**base)
    default = {d.kind.value for d in rules.evaluate(facts, rules.Thresholds())}
    changed = {
        d.kind.value
        for d in rules.evaluate(facts, dataclasses.replace(rules.Thresholds(), **{name: value}))
    }
    assert (kind in default) != (kind in changed), (name, default, changed)


def test_the_model_defaults_are_the_rules_defaults(db):
    assert FlagRule().thresholds() == rules.Thresholds()


# --- the program's percentile reaches the recompute (issue: it was always the 20th) -------


@pytest.fixture
def clinic_of_ratings(people):
    """Forty other patients' bond ratings: 4.0 to 5.0, so the median is 4.5."""
    from outcomes import services as outcome_services

    from .conftest import wai_answers

    version = outcome_services.latest_version("wai-sr")
    for n in range(40):
        patient = EnrolmentFactory(patient=PatientFactory()).patient
        outcome_services.response_record(
            actor=people.admin,
            patient=patient,
            version=version,
            answers=wai_answers(4 if n < 20 else 5),
            administered_at=NOW,
        )


@pytest.mark.django_db
def test_the_programs_percentile_raises_and_clears_the_weak_bond_flag(
    people, rate, dosing_in, clinic_of_ratings
):
    dosing_in(5)
    rate(bond=4)  # fine against 3.5; below the clinic's 90th percentile (5.0)
    services.recompute_patient(patient_id=people.patient.pk)
    assert not Flag.objects.filter(kind="weak_bond").exists()

    rule = FlagRule.objects.create(program=people.enrolment.program, percentile=90)
    services.recompute_patient(patient_id=people.patient.pk)
    flag = Flag.objects.get(kind="weak_bond", status="open")
    assert flag.evidence["percentile"] == 90 and flag.evidence["clinic_percentile"] == 5.0
    assert "the clinic's 90th percentile (5.00)" in selectors.flag_summary(flag)

    services.flag_rule_update(actor=people.admin, rule=rule, percentile=50)  # median 4.0
    services.recompute_patient(patient_id=people.patient.pk)
    flag.refresh_from_db()
    assert flag.status == "auto_resolved"


@pytest.mark.django_db
def test_a_sweep_reads_each_percentile_once(people, rate, dosing_in, django_assert_num_queries):
    dosing_in(5)
    rate(bond=4)
    FlagRule.objects.create(program=people.enrolment.program, percentile=90)
    bonds = flag_inputs.clinic_bond_percentiles([20, 90])
    assert set(bonds) == {20, 90}
    # With the percentiles handed in, one patient's recompute reads none itself.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        services.recompute_patient(patient_id=people.patient.pk, clinic_bonds=bonds)
    assert not any("percentile_cont" in q["sql"] for q in queries.captured_queries)


@pytest.mark.django_db
def test_a_threshold_change_is_audited_and_recomputes_that_programs_patients(people):
    other = EnrolmentFactory()  # another program: not touched
    rule = FlagRule.objects.create(program=people.enrolment.program)
    StalePatient.objects.all().delete()
    services.flag_rule_update(actor=people.admin, rule=rule, weak_bond_below=4.0)
    event = AuditEvent.objects.filter(object_type="alliance.flagrule").latest("at")
    assert event.actor == people.admin
    assert event.detail["thresholds"] == {"weak_bond_below": {"old": 3.5, "new": 4.0}}
    stale = set(StalePatient.objects.values_list("patient_id", flat=True))
    assert stale == {people.patient.pk} and other.patient_id not in stale
    # The drain recomputes them and empties the outbox.
    from alliance.tasks import drain_stale

    assert drain_stale() == 0
    assert not StalePatient.objects.exists()


@pytest.mark.django_db
def test_an_invalid_threshold_changes_and_recomputes_nothing(people):
    rule = FlagRule.objects.create(program=people.enrolment.program)
    StalePatient.objects.all().delete()
    events = AuditEvent.objects.count()
    with pytest.raises(ValidationError):
        services.flag_rule_update(actor=people.admin, rule=rule, weak_bond_below=9, percentile=50)
    rule.refresh_from_db()
    assert (rule.weak_bond_below, rule.percentile) == (3.5, 20)
    assert not StalePatient.objects.exists() and AuditEvent.objects.count() == events


@pytest.mark.django_db
def test_the_threshold_page_saves_through_the_audited_service(people, client):
    client.force_login(people.admin)
    program = people.enrolment.program
    data = {name: getattr(FlagRule(), name) for name in FlagRule.FIELDS}
    response = client.post(f"/thresholds/{program.pk}/", {**data, "percentile": 90})
    assert response.status_code == 302
    event = AuditEvent.objects.filter(object_type="alliance.flagrule").latest("at")
    assert event.detail["thresholds"]["percentile"] == {"old": None, "new": 90}
