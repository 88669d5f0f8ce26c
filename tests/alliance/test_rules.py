"""Each flag rule at, just below and just above its threshold (no database needed)."""

import datetime

import pytest

from alliance.rules import (
    AlliancePoint,
    Dosing,
    Facts,
    Kind,
    SafetyHit,
    Severity,
    SrsPoint,
    Thresholds,
    evaluate,
)

NOW = datetime.datetime(2026, 3, 12, 12, 0, tzinfo=datetime.UTC)
T = Thresholds()


def days(n: float) -> datetime.timedelta:
    return datetime.timedelta(days=n)


YESTERDAY = NOW - days(1)


def wai(bond, *, at=YESTERDAY, total=4.0, rid=1):
    return AlliancePoint(response_id=rid, at=at, bond=bond, total=total)


def kinds(facts: Facts, thresholds: Thresholds = T) -> set[str]:
    return {d.kind.value for d in evaluate(facts, thresholds)}


DOSING_IN_7_DAYS = Dosing(session_id=99, start=NOW + days(7))


# --- weak_bond -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bond", "flagged"), [(3.49, True), (3.5, False), (3.51, False), (2.0, True)]
)
def test_weak_bond_below_3_5_before_a_dosing(bond, flagged):
    facts = Facts(now=NOW, alliance=[wai(bond)], dosings=[DOSING_IN_7_DAYS])
    assert ("weak_bond" in kinds(facts)) is flagged


@pytest.mark.parametrize(("dosing_in", "flagged"), [(13.9, True), (14, True), (14.1, False)])
def test_weak_bond_only_within_14_days_of_dosing(dosing_in, flagged):
    facts = Facts(
        now=NOW, alliance=[wai(3.0)], dosings=[Dosing(session_id=1, start=NOW + days(dosing_in))]
    )
    assert ("weak_bond" in kinds(facts)) is flagged


def test_weak_bond_is_not_raised_without_an_upcoming_dosing_or_for_a_past_one():
    assert kinds(Facts(now=NOW, alliance=[wai(2.0)])) == set()
    past = Dosing(session_id=1, start=NOW - days(1))
    assert "weak_bond" not in kinds(Facts(now=NOW, alliance=[wai(2.0)], dosings=[past]))


def test_weak_bond_uses_the_latest_rating_so_a_recovery_clears_it():
    facts = Facts(
        now=NOW,
        alliance=[wai(3.0, at=NOW - days(5), rid=1), wai(4.0, at=NOW - days(1), rid=2)],
        dosings=[DOSING_IN_7_DAYS],
    )
    assert "weak_bond" not in kinds(facts)


def test_weak_bond_uses_the_clinic_percentile_once_30_ratings_exist():
    base = {"now": NOW, "alliance": [wai(3.8)], "dosings": [DOSING_IN_7_DAYS]}
    assert "weak_bond" in kinds(Facts(**base, clinic_bond_percentile=3.9, clinic_bond_ratings=30))
    assert "weak_bond" not in kinds(
        Facts(**base, clinic_bond_percentile=3.9, clinic_bond_ratings=29)
    )
    assert "weak_bond" not in kinds(
        Facts(**base, clinic_bond_percentile=3.8, clinic_bond_ratings=30)
    )


def test_weak_bond_evidence_and_severity():
    (decision,) = [
        d
        for d in evaluate(Facts(now=NOW, alliance=[wai(2.9, rid=7)], dosings=[DOSING_IN_7_DAYS]), T)
        if d.kind == Kind.WEAK_BOND
    ]
    assert decision.dosing_session_id == 99
    assert decision.severity == Severity.HIGH  # 2.9 is more than half a point under 3.5
    assert decision.evidence["bond"] == 2.9
    assert decision.evidence["threshold"] == 3.5
    assert decision.evidence["response_id"] == 7
    assert decision.evidence["dosing_at"] == (NOW + days(7)).isoformat()


def test_one_weak_bond_flag_per_upcoming_dosing():
    dosings = [Dosing(1, NOW + days(2)), Dosing(2, NOW + days(10))]
    decisions = evaluate(Facts(now=NOW, alliance=[wai(3.0)], dosings=dosings), T)
    assert sorted(d.dosing_session_id for d in decisions if d.kind == Kind.WEAK_BOND) == [1, 2]


# --- bond_drop -----------------------------------------------------------------------------


@pytest.mark.parametrize(("after", "flagged"), [(3.49, True), (3.5, False), (3.75, False)])
def test_bond_drop_more_than_the_rci_between_consecutive_ratings(after, flagged):
    # RCI 0.5: a fall from 4.0 to 3.5 is exactly 0.5, not more, so no flag.
    ratings = [wai(4.0, at=NOW - days(8), rid=1), wai(after, at=NOW - days(1), rid=2)]
    assert ("bond_drop" in kinds(Facts(now=NOW, alliance=ratings))) is flagged


def test_bond_drop_compares_only_the_two_latest_ratings():
    ratings = [
        wai(4.5, at=NOW - days(9), rid=1),
        wai(3.6, at=NOW - days(5), rid=2),
        wai(3.7, at=NOW - days(1), rid=3),
    ]
    assert "bond_drop" not in kinds(Facts(now=NOW, alliance=ratings))


# --- alliance_missing ----------------------------------------------------------------------


def test_alliance_missing_when_dosing_within_72h_and_no_rating_since_last_preparation():
    prep = NOW - days(2)
    dosing = Dosing(5, NOW + datetime.timedelta(hours=71))
    rated_before_prep = wai(4.2, at=prep - days(7))
    facts = Facts(now=NOW, alliance=[rated_before_prep], dosings=[dosing], preparations=[prep])
    assert "alliance_missing" in kinds(facts)
    rated_after_prep = wai(4.2, at=prep + datetime.timedelta(hours=1), rid=2)
    facts = Facts(
        now=NOW,
        alliance=[rated_before_prep, rated_after_prep],
        dosings=[dosing],
        preparations=[prep],
    )
    assert "alliance_missing" not in kinds(facts)


@pytest.mark.parametrize(("hours", "flagged"), [(72, True), (73, False)])
def test_alliance_missing_window_is_72_hours(hours, flagged):
    dosing = Dosing(5, NOW + datetime.timedelta(hours=hours))
    facts = Facts(now=NOW, dosings=[dosing], preparations=[NOW - days(1)])
    assert ("alliance_missing" in kinds(facts)) is flagged


# --- low_alliance --------------------------------------------------------------------------


def srs(total, *, at, rid):
    return SrsPoint(response_id=rid, at=at, total=total)


@pytest.mark.parametrize(("total", "flagged"), [(35.9, True), (36.0, False), (38.0, False)])
def test_low_alliance_when_srs_below_36(total, flagged):
    facts = Facts(now=NOW, srs=[srs(total, at=NOW - days(1), rid=1)])
    assert ("low_alliance" in kinds(facts)) is flagged


@pytest.mark.parametrize(("latest", "flagged"), [(38.0, True), (38.1, False)])
def test_low_alliance_when_srs_falls_a_point_or_more(latest, flagged):
    points = [srs(39.0, at=NOW - days(8), rid=1), srs(latest, at=NOW - days(1), rid=2)]
    assert ("low_alliance" in kinds(Facts(now=NOW, srs=points))) is flagged


@pytest.mark.parametrize(("total", "flagged"), [(3.49, True), (3.5, False)])
def test_low_alliance_when_wai_total_mean_below_threshold(total, flagged):
    facts = Facts(now=NOW, alliance=[wai(4.0, total=total)])
    assert ("low_alliance" in kinds(facts)) is flagged


def test_a_rating_without_upcoming_dosing_raises_only_non_dosing_rules():
    facts = Facts(now=NOW, alliance=[wai(2.0, total=2.0)])
    decisions = evaluate(facts, T)
    assert {d.kind for d in decisions} == {Kind.LOW_ALLIANCE}
    assert decisions[0].dosing_session_id is None


# --- safety --------------------------------------------------------------------------------


def test_any_safety_hit_is_urgent_whatever_the_schedule():
    hit = SafetyHit(response_id=3, at=NOW, instrument="phq-9", item=9, value=1, urgent=False)
    (decision,) = evaluate(Facts(now=NOW, safety=[hit]), T)
    assert decision.kind == Kind.SAFETY and decision.severity == Severity.URGENT
    assert decision.evidence["hits"][0]["item"] == 9


def test_thresholds_are_per_program_settings():
    facts = Facts(now=NOW, alliance=[wai(3.8)], dosings=[DOSING_IN_7_DAYS])
    assert "weak_bond" not in kinds(facts)
    assert "weak_bond" in kinds(facts, Thresholds(weak_bond_below=4.0))


def test_same_facts_give_the_same_decisions():
    facts = Facts(
        now=NOW,
        alliance=[wai(4.2, at=NOW - days(8), rid=1), wai(3.0, at=NOW - days(1), rid=2)],
        dosings=[DOSING_IN_7_DAYS],
        srs=[srs(30, at=NOW - days(1), rid=3)],
    )
    assert evaluate(facts, T) == evaluate(facts, T)
