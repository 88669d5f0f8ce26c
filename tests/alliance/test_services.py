import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alliance import services
from alliance.models import Flag, FlagRule
from clinic.models import AuditEvent
from clinic.roles import Role
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _recompute(people):
    return services.recompute_patient(patient_id=people.patient.pk)


def _open(people):
    return {
        (f.kind, f.dosing_session_id)
        for f in Flag.objects.filter(patient=people.patient, status__in=Flag.UNRESOLVED)
    }


@pytest.mark.shifted_clock
def test_weak_bond_before_dosing_raises_a_flag_with_its_evidence(people, rate, dosing_in):
    dosing = dosing_in(7)
    response = rate(bond=2)  # bond mean 2.0, WAI total (8*4 + 4*2)/12 = 3.33
    _recompute(people)
    flag = Flag.objects.get(kind="weak_bond")
    assert flag.dosing_session == dosing and flag.status == "open"
    assert flag.evidence["bond"] == 2.0 and flag.evidence["response_id"] == response.pk
    assert flag.severity == "high"


def test_running_twice_changes_nothing(people, rate, dosing_in):
    dosing_in(7)
    rate(bond=2)
    _recompute(people)
    before = list(Flag.objects.order_by("pk").values())
    result = _recompute(people)
    assert result == {"created": [], "updated": [], "cleared": []}
    assert list(Flag.objects.order_by("pk").values()) == before


@pytest.mark.shifted_clock
def test_a_better_rating_auto_resolves_the_flag(people, rate, dosing_in):
    dosing_in(7)
    rate(bond=2, days_ago=3)
    _recompute(people)
    rate(bond=4, days_ago=1)
    _recompute(people)
    flag = Flag.objects.get(kind="weak_bond")
    assert flag.status == "auto_resolved" and flag.resolved_at is not None


@pytest.mark.shifted_clock
def test_without_upcoming_dosing_only_non_dosing_rules_fire(people, rate):
    rate(bond=2, rest=2)  # WAI total mean 2.0: low_alliance, but no dosing for weak_bond
    _recompute(people)
    assert _open(people) == {("low_alliance", None)}


@pytest.mark.shifted_clock
def test_a_resolved_flag_is_not_raised_again_for_the_same_evidence(people, rate, dosing_in):
    dosing_in(7)
    rate(bond=3, days_ago=2)
    _recompute(people)
    flag = Flag.objects.get(kind="weak_bond")
    services.flag_resolve(actor=people.coach, flag=flag, note="Extra preparation booked.")
    _recompute(people)
    assert Flag.objects.filter(kind="weak_bond").count() == 1
    rate(bond=2, days_ago=1)  # new evidence raises a new flag
    _recompute(people)
    assert Flag.objects.filter(kind="weak_bond", status="open").count() == 1


@pytest.mark.shifted_clock
def test_one_low_rating_before_two_dosings_is_one_flag_that_moves_on_to_the_next(
    people, rate, dosing_in
):
    from sessions.models import Session

    first, second = dosing_in(3), dosing_in(10)
    rate(bond=2)
    _recompute(people)
    flag = Flag.objects.get(kind="weak_bond")
    assert flag.dosing_session == first
    assert [d["session_id"] for d in flag.evidence["dosings"]] == [first.pk, second.pk]
    # Each dosing's readiness still counts it.
    from alliance.caseload import dosing_readiness

    readiness = dosing_readiness([first, second])
    for dosing in (first, second):
        assert any(f"flag:{flag.public_id}" == risk.key for risk in readiness[dosing.pk].risks)
    # The first dosing is over: the same flag now concerns the second, and nothing new is sent.
    Session.objects.filter(pk=first.pk).update(status="completed")
    result = _recompute(people)
    assert result["created"] == [] and result["cleared"] == []
    flag.refresh_from_db()
    assert flag.status == "open" and flag.dosing_session == second
    assert Flag.objects.filter(kind="weak_bond").count() == 1


@pytest.mark.shifted_clock
def test_flags_raised_once_per_dosing_before_are_merged_into_one(people, rate, dosing_in):
    """Flags from before the per-patient rule (one per dosing) become one at the next run."""
    first, second = dosing_in(3), dosing_in(10)
    rate(bond=2)
    _recompute(people)
    kept = Flag.objects.get(kind="weak_bond")
    Flag.objects.create(
        patient=people.patient,
        kind="weak_bond",
        severity=kept.severity,
        dosing_session=second,
        evidence=kept.evidence,
        raised_at=kept.raised_at,
    )
    result = _recompute(people)
    (merged,) = result["cleared"]
    assert merged.pk != kept.pk and merged.status == "auto_resolved"
    assert "Merged into one flag" in merged.resolution_note
    assert list(Flag.objects.filter(kind="weak_bond", status="open")) == [kept]
    assert first.pk == kept.dosing_session_id


def test_one_open_flag_per_patient_kind_and_dosing_is_a_database_rule(people, rate, dosing_in):
    from django.db import IntegrityError
    from django.utils import timezone

    dosing = dosing_in(7)
    rate(bond=2)
    _recompute(people)
    with pytest.raises(IntegrityError):
        Flag.objects.create(
            patient=people.patient,
            kind="weak_bond",
            severity="high",
            dosing_session=dosing,
            raised_at=timezone.now(),
        )


def test_safety_answer_raises_an_urgent_flag_and_notifies_at_once(people, rate):
    answers = {n: 0 for n in range(1, 11)} | {9: 1}
    rate(bond=None, code="phq-9", answers=answers)
    _recompute(people)
    flag = Flag.objects.get(kind="safety")
    assert flag.severity == "urgent" and flag.dosing_session is None
    assert services.notify_flag(flag_id=flag.pk) is True
    assert mail.outbox[-1].subject.startswith("URGENT: Safety")


def test_a_new_flag_is_mailed_once_to_coaches_and_clinicians(people, rate, dosing_in):
    dosing_in(7)
    rate(bond=2)
    _recompute(people)
    flag = Flag.objects.get(kind="weak_bond")
    assert services.notify_flag(flag_id=flag.pk) is True
    assert services.notify_flag(flag_id=flag.pk) is False  # claimed already: never twice
    weak = [m for m in mail.outbox if "Weak bond" in m.subject]
    assert len(weak) == 1
    assert set(weak[0].to) == {people.coach.email, people.clinician.email}
    assert people.patient.last_name not in weak[0].body
    assert "Bond mean 2 " in weak[0].body


def test_acknowledge_then_resolve_needs_a_note(people, rate, dosing_in):
    dosing_in(7)
    rate(bond=2)
    _recompute(people)
    flag = Flag.objects.get(kind="weak_bond")
    services.flag_acknowledge(actor=people.coach, flag=flag)
    with pytest.raises(ValidationError):
        services.flag_resolve(actor=people.coach, flag=flag, note=" ")
    flag = services.flag_resolve(actor=people.coach, flag=flag, note="Changed coach.")
    assert (flag.status, flag.resolved_by) == ("resolved", people.coach)


def test_program_thresholds_are_used_and_validated(people, rate, dosing_in):
    dosing_in(7)
    rate(bond=4)  # bond 4.0: fine under the default 3.5
    _recompute(people)
    assert not Flag.objects.filter(kind="weak_bond").exists()
    rule = FlagRule.objects.create(program=people.enrolment.program, weak_bond_below=4.5)
    _recompute(people)
    assert Flag.objects.filter(kind="weak_bond").exists()
    with pytest.raises(ValidationError):
        services.flag_rule_update(actor=people.admin, rule=rule, weak_bond_below=7)
    rule.refresh_from_db()
    assert rule.weak_bond_below == 4.5


def test_a_threshold_outside_the_instrument_range_is_refused_by_the_database(db):
    from django.db import IntegrityError

    with pytest.raises(IntegrityError):
        FlagRule.objects.filter(program=None).update(srs_below=50)


def test_inactive_clinicians_are_not_mailed(people, rate, dosing_in):
    UserFactory(role=Role.CLINICIAN, is_active=False, email="gone@clinic.test")
    dosing_in(7)
    rate(bond=2)
    _recompute(people)
    services.notify_flag(flag_id=Flag.objects.get(kind="weak_bond").pk)
    assert "gone@clinic.test" not in mail.outbox[-1].to


def test_automatic_flag_changes_are_audited_as_the_system(people, rate, dosing_in):
    dosing_in(5)
    rate(bond=2)
    services.recompute_patient(patient_id=people.patient.pk)
    raised = AuditEvent.objects.filter(object_type="alliance.flag", detail__flag="raised")
    assert raised.exists() and {e.actor for e in raised} == {None}
    rate(bond=5, days_ago=0)
    services.recompute_patient(patient_id=people.patient.pk)
    cleared = AuditEvent.objects.filter(object_type="alliance.flag", detail__flag="cleared")
    assert cleared.exists() and cleared.first().patient == people.patient


@pytest.mark.shifted_clock
def test_the_set_based_sweep_stores_the_caseload_order(people, rate, dosing_in):
    from clinic.models import Patient

    dosing = dosing_in(3)
    rate(bond=2)
    # Forget what the save's own recompute stored: the sweep alone must put it back.
    Patient.objects.filter(pk=people.patient.pk).update(
        caseload_flag_rank=None, caseload_next_dosing_at=None
    )
    services.recompute_patients(patient_ids=[people.patient.pk])
    patient = Patient.objects.get(pk=people.patient.pk)
    open_flags = Flag.objects.filter(patient=people.patient, status__in=Flag.UNRESOLVED)
    assert "weak_bond" in {f.kind for f in open_flags}
    assert patient.caseload_flag_rank == min(Flag.SEVERITY_RANK[f.severity] for f in open_flags)
    assert patient.caseload_next_dosing_at == dosing.scheduled_start


@pytest.mark.shifted_clock
def test_the_sweep_corrects_wrong_caseload_keys_and_writes_none_that_are_right(people, rate):
    from clinic.models import Patient

    rate(bond=5)  # no flag and no dosing: both keys empty
    Patient.objects.filter(pk=people.patient.pk).update(
        caseload_flag_rank=0, caseload_next_dosing_at=timezone.now()
    )
    services.recompute_patients(patient_ids=[people.patient.pk])
    patient = Patient.objects.get(pk=people.patient.pk)
    assert (patient.caseload_flag_rank, patient.caseload_next_dosing_at) == (None, None)
    with CaptureQueriesContext(connection) as ctx:
        services.recompute_patients(patient_ids=[people.patient.pk])
    assert not [q for q in ctx.captured_queries if q["sql"].lstrip().startswith("UPDATE")]
