"""The set-based recompute (sweeps, imports, `recompute_flags`) against the per-patient one
(a coach's save): the same flags, the same audit rows, and nothing skipped when a sweep is
cut short."""

import datetime
import uuid

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction
from django.utils import timezone

from alliance import flag_inputs, rules, services, trajectories
from alliance.models import Flag, FlagRule, StalePatient
from alliance.tasks import drain_stale
from clinic import services as clinic_services
from clinic.models import AuditEvent, Patient
from outcomes import services as outcome_services
from sessions import services as session_services
from sessions.models import Session, SessionKind
from tests.alliance.conftest import bond_answers, rate_at
from tests.factories import PatientFactory, ProgramFactory, protocol_named


def _rate(people, patient, *, bond=None, code="wai-sr", answers=None, days_ago=1, session=None):
    return outcome_services.response_record(
        actor=people.coach,
        patient=patient,
        version=outcome_services.latest_version(code),
        answers=answers or bond_answers(bond),
        administered_at=timezone.now() - datetime.timedelta(days=days_ago),
        session=session,
    )


def _enrol(people, program, *, days_ago):
    return clinic_services.patient_enrol(
        actor=people.admin,
        patient=PatientFactory(),
        program=program,
        start_date=timezone.localdate() - datetime.timedelta(days=days_ago),
    )


def _sessions(enrolment, kind):
    return list(Session.objects.filter(enrolment=enrolment, kind=kind).order_by("scheduled_start"))


def _varied_clinic(people) -> dict[str, int]:
    """Two programs with different thresholds (one with its own rule, one under the clinic
    default), low, high, falling and missing bonds, low SRS, safety answers given and skipped,
    a serious adverse event, a withdrawn patient, off-track ratings, and flags a person has
    acknowledged or resolved. Returns patient ids by what is special about them."""
    FlagRule.objects.filter(program=None).update(percentile=25, percentile_min_ratings=5)
    ketamine = ProgramFactory(protocol=protocol_named("Ketamine-assisted therapy series"))
    psilocybin = ProgramFactory(protocol=protocol_named("Psilocybin for depression, two doses"))
    FlagRule.objects.create(
        program=psilocybin, percentile=40, percentile_min_ratings=5, band_min_patients=5
    )
    who = {}

    # Ketamine: preparations 5 and 1 days ago, dosings in about 2, 5, 9 and 13 days.
    for name, bonds in {
        "low": [2.0],
        "high": [4.75, 4.75],
        "falling": [4.5, 3.0],
        "cleared_later": [2.0],
        "resolved_by_a_person": [2.25],
        "resolved_then_better": [2.25],
        "withdrawn": [2.0],
        "unrated": [],
    }.items():
        enrolment = _enrol(people, ketamine, days_ago=5)
        who[name] = enrolment.patient.pk
        for days_ago, bond in zip((4, 2), bonds, strict=False):
            _rate(people, enrolment.patient, bond=bond, days_ago=days_ago)

    # Both preparations logged as done, no rating since, and a dosing within 72 hours.
    enrolment = _enrol(people, ketamine, days_ago=9)
    who["missing_before_dosing"] = enrolment.patient.pk
    for preparation in _sessions(enrolment, SessionKind.PREPARATION):
        session_services.session_log(
            actor=people.coach, session=preparation, status="completed", duration_minutes=60
        )

    enrolment = _enrol(people, ketamine, days_ago=5)
    who["srs_falling"] = enrolment.patient.pk
    _rate(people, enrolment.patient, code="srs", answers={1: 9, 2: 9, 3: 9, 4: 9}, days_ago=3)
    _rate(people, enrolment.patient, code="srs", answers={1: 8, 2: 8, 3: 7, 4: 7}, days_ago=1)

    enrolment = _enrol(people, ketamine, days_ago=5)
    who["self_harm"] = enrolment.patient.pk
    _rate(
        people,
        enrolment.patient,
        code="phq-9",
        answers={n: (2 if n == 9 else 1) for n in range(1, 10)},
    )

    enrolment = _enrol(people, ketamine, days_ago=5)
    who["skipped_item_9"] = enrolment.patient.pk
    _rate(people, enrolment.patient, code="phq-9", answers={n: 1 for n in range(1, 9)})

    # Skipped, then answered in a later questionnaire (rated after yesterday's recompute).
    enrolment = _enrol(people, ketamine, days_ago=5)
    who["skipped_then_answered"] = enrolment.patient.pk
    _rate(people, enrolment.patient, code="phq-9", answers={n: 1 for n in range(1, 9)}, days_ago=2)

    enrolment = _enrol(people, ketamine, days_ago=5)
    who["serious_event"] = enrolment.patient.pk
    session_services.adverse_event_record(
        actor=people.coach,
        patient=enrolment.patient,
        token=uuid.uuid4(),
        description="Admitted overnight with chest pain",
        onset_at=timezone.now() - datetime.timedelta(days=1),
        grade="severe",
        relatedness="possible",
        serious=True,
        serious_criteria=["hospitalisation"],
    )

    # Psilocybin: six patients rated at preparations 1 and 2 make the steps' bands; one is
    # far below the others there (off track).
    for n, bond in enumerate([3.75, 4.0, 4.25, 4.5, 4.75, 4.5, 2.5]):
        enrolment = _enrol(people, psilocybin, days_ago=20)
        who[f"psilocybin_{n}"] = enrolment.patient.pk
        for session in _sessions(enrolment, SessionKind.PREPARATION)[:2]:
            rate_at(people, enrolment.patient, session, bond)
    who["off_track"] = who.pop("psilocybin_6")
    return who


def _flags_by_patient() -> dict[int, list[tuple]]:
    found: dict[int, list[tuple]] = {}
    for row in Flag.objects.order_by(
        "patient_id", "kind", "dosing_session_id", "status"
    ).values_list(
        "patient_id",
        "kind",
        "dosing_session_id",
        "status",
        "severity",
        "evidence",
        "still_applies",
        "resolution_note",
    ):
        found.setdefault(row[0], []).append(row[1:])
    return found


def _automatic_audit_after(last_id: int) -> list[tuple]:
    return sorted(
        (patient_id, detail["flag"], detail["kind"], detail.get("note", ""))
        for patient_id, detail in AuditEvent.objects.filter(
            pk__gt=last_id, actor__isnull=True, object_type="alliance.flag"
        ).values_list("patient_id", "detail")
    )


@pytest.mark.shifted_clock
def test_a_sweep_raises_updates_and_clears_the_same_flags_as_one_recompute_per_patient(people):
    who = _varied_clinic(people)
    trajectories.recompute_expected_bands()
    # Yesterday's state, then what people and the clinic did since.
    for patient_id in flag_inputs.patients_to_sweep_ids():
        services.recompute_patient(patient_id=patient_id)
    # The weak_bond flag (one per patient, naming the nearest dosing).
    for flag in Flag.objects.filter(
        patient_id__in=[who["resolved_by_a_person"], who["resolved_then_better"]],
        kind="weak_bond",
    ):
        services.flag_resolve(actor=people.coach, flag=flag, note="Extra preparation session")
    _rate(people, Patient.objects.get(pk=who["resolved_then_better"]), bond=4.75, days_ago=0)
    for flag in Flag.objects.filter(patient_id=who["cleared_later"], kind="weak_bond"):
        services.flag_acknowledge(actor=people.coach, flag=flag)
    for flag in Flag.objects.filter(patient_id=who["self_harm"], kind="safety"):
        services.flag_resolve(actor=people.coach, flag=flag, note="Spoke with the patient")
    _rate(
        people,
        Patient.objects.get(pk=who["skipped_then_answered"]),
        code="phq-9",
        answers={n: (0 if n == 9 else 1) for n in range(1, 10)},
        days_ago=0,
    )
    _rate(people, Patient.objects.get(pk=who["cleared_later"]), bond=4.75, days_ago=0)
    clinic_services.patient_change_status(
        actor=people.admin,
        patient=Patient.objects.get(pk=who["withdrawn"]),
        to_status="withdrawn",
        reason="Moved away",
    )
    trajectories.recompute_expected_bands()

    ids = flag_inputs.patients_to_sweep_ids()
    assert who["withdrawn"] in ids  # withdrawn, but a flag of theirs is still open
    now = timezone.now()
    last_audit = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first()

    savepoint = transaction.savepoint()
    for patient_id in ids:
        services.recompute_patient(patient_id=patient_id, now=now)
    one_by_one = _flags_by_patient()
    audited_one_by_one = _automatic_audit_after(last_audit)
    transaction.savepoint_rollback(savepoint)

    result = services.recompute_patients(patient_ids=ids, now=now, chunk_size=5)
    assert result.left == [] and result.failed == []
    swept = _flags_by_patient()
    assert _automatic_audit_after(last_audit) == audited_one_by_one
    assert swept.keys() == one_by_one.keys()
    for patient_id in one_by_one:
        assert swept[patient_id] == one_by_one[patient_id], patient_id

    # The clinic really is varied: every rule fired somewhere, and flags were cleared and
    # resolved-but-still-holding, so the comparison covered every kind of write.
    kinds = {flag[0] for flags in swept.values() for flag in flags}
    assert kinds == {kind.value for kind in rules.Kind}
    assert ("weak_bond", "auto_resolved") in {(f[0], f[2]) for f in swept[who["cleared_later"]]}
    assert any(f[2] == "resolved" and f[5] for f in swept[who["resolved_by_a_person"]])
    assert {(f[0], f[5]) for f in swept[who["resolved_then_better"]] if f[2] == "resolved"} == {
        ("weak_bond", False)
    }
    # Withdrawing cancelled the dosings, so their flags cleared; the low rating stands as the
    # same one flag (low alliance is per patient), now with no dosing ahead.
    assert {(f[0], f[1] is None, f[2]) for f in swept[who["withdrawn"]]} == {
        ("weak_bond", False, "auto_resolved"),
        ("low_alliance", True, "open"),
    }
    assert "off_track" in {f[0] for f in swept[who["off_track"]]}
    # A safety answer a person dealt with stays dealt with; a skipped item answered later clears.
    assert {(f[0], f[2]) for f in swept[who["self_harm"]] if f[0] == "safety"} == {
        ("safety", "resolved")
    }
    assert ("safety_unanswered", "auto_resolved") in {
        (f[0], f[2]) for f in swept[who["skipped_then_answered"]]
    }
    assert "safety_unanswered" in {f[0] for f in swept[who["skipped_item_9"]]}
    assert who["high"] not in swept
    assert {f[0] for f in swept[who["unrated"]]} == {"alliance_missing"}
    assert not StalePatient.objects.filter(patient_id__in=ids).exists()


def _weak_bond_patients() -> set[int]:
    return set(Flag.objects.filter(kind="weak_bond").values_list("patient_id", flat=True))


def _low_bond_clinic(people, patients: int) -> list[int]:
    program = ProgramFactory(protocol=protocol_named("Ketamine-assisted therapy series"))
    ids = []
    for _ in range(patients):
        enrolment = _enrol(people, program, days_ago=5)
        _rate(people, enrolment.patient, bond=2.0, days_ago=2)
        ids.append(enrolment.patient.pk)
    StalePatient.objects.all().delete()  # as if the saves' own recomputes had run
    return ids


@pytest.mark.shifted_clock
@pytest.mark.real_clock(
    reason="the outbox and the chunks are under test; the hours are the comparison's"
)
def test_a_sweep_past_its_deadline_leaves_the_rest_in_the_outbox_for_the_drain(people):
    ids = _low_bond_clinic(people, 5)
    result = services.recompute_patients(
        patient_ids=ids,
        deadline=0,
        chunk_size=2,  # past at once: only the first chunk runs
    )
    assert result.done == 2 and result.left == ids[2:]
    assert set(Flag.objects.values_list("patient_id", flat=True)) == set(ids[:2])
    assert set(StalePatient.objects.values_list("patient_id", flat=True)) == set(ids[2:])

    drain_stale()  # the next minute's drain

    assert _weak_bond_patients() == set(ids)
    assert not StalePatient.objects.exists()


@pytest.mark.shifted_clock
@pytest.mark.real_clock(
    reason="the outbox and the chunks are under test; the hours are the comparison's"
)
def test_a_sweep_interrupted_mid_chunk_writes_nothing_of_that_chunk_and_skips_no_one(
    people, monkeypatch
):
    ids = _low_bond_clinic(people, 5)
    evaluated, evaluate = [], rules.evaluate

    def evaluate_until_the_time_limit(facts, thresholds):
        evaluated.append(facts)
        if len(evaluated) == 3:  # the first patient of the second chunk
            raise SoftTimeLimitExceeded()
        return evaluate(facts, thresholds)

    monkeypatch.setattr(services.rules, "evaluate", evaluate_until_the_time_limit)
    with pytest.raises(SoftTimeLimitExceeded):
        services.recompute_patients(patient_ids=ids, chunk_size=2)
    monkeypatch.undo()

    assert set(Flag.objects.values_list("patient_id", flat=True)) == set(ids[:2])
    assert set(StalePatient.objects.values_list("patient_id", flat=True)) == set(ids[2:])
    drain_stale()
    assert _weak_bond_patients() == set(ids)


@pytest.mark.shifted_clock
@pytest.mark.real_clock(
    reason="the outbox and the chunks are under test; the hours are the comparison's"
)
def test_a_chunk_that_fails_is_retried_patient_by_patient(people, monkeypatch):
    from django.db import DatabaseError

    ids = _low_bond_clinic(people, 3)

    def broken_chunk(*args, **kwargs):
        raise DatabaseError("deadlock detected")

    monkeypatch.setattr(services, "_recompute_chunk", broken_chunk)
    result = services.recompute_patients(patient_ids=ids, chunk_size=3)
    assert result.failed == [] and result.done == 3
    assert _weak_bond_patients() == set(ids)


@pytest.mark.shifted_clock
@pytest.mark.real_clock(
    reason="the outbox and the chunks are under test; the hours are the comparison's"
)
def test_a_sweep_pauses_the_cycle_collector_per_chunk_and_always_gives_it_back(people, monkeypatch):
    import gc

    ids = _low_bond_clinic(people, 4)
    seen, evaluate = [], rules.evaluate

    def evaluate_noting_the_collector(facts, thresholds):
        seen.append(gc.isenabled())
        if len(seen) == 3:  # the first patient of the second chunk
            raise SoftTimeLimitExceeded()
        return evaluate(facts, thresholds)

    assert gc.isenabled()
    monkeypatch.setattr(services.rules, "evaluate", evaluate_noting_the_collector)
    with pytest.raises(SoftTimeLimitExceeded):
        services.recompute_patients(patient_ids=ids, chunk_size=2)
    assert seen == [False, False, False]
    assert gc.isenabled()  # an interrupted sweep does not leave the worker without it
    monkeypatch.undo()

    gc.disable()  # whoever turned it off themselves keeps it off
    try:
        services.recompute_patients(patient_ids=ids, chunk_size=2)
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert _weak_bond_patients() == set(ids)


@pytest.mark.shifted_clock
@pytest.mark.real_clock(reason="the command's wiring is under test; the hours are the comparison's")
def test_recompute_flags_sweeps_everyone_in_care_and_says_what_changed(people):
    from io import StringIO

    from django.core.management import call_command

    ids = _low_bond_clinic(people, 3)
    out = StringIO()
    call_command("recompute_flags", stdout=out)
    raised = Flag.objects.filter(patient_id__in=ids).count()
    assert _weak_bond_patients() == set(ids)
    assert f"{raised} flag(s) raised, 0 updated, 0 cleared." in out.getvalue()
    # Every new flag was e-mailed by the command's notify pass.
    assert not Flag.objects.filter(notified_at__isnull=True).exists()
