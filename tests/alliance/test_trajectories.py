"""Expected trajectories: the nightly band table, the off_track flag, readiness, pages.

The data are synthetic with a known answer: earlier patients' bonds at a protocol step are
chosen so that the 10th percentile is a round number, and the patient is placed just below
or just above it."""

import dataclasses
import datetime
from types import SimpleNamespace

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone

from alliance import bands, caseload, charts, dashboard, rules, services, summary, trajectories
from alliance.models import ExpectedBand, Flag
from clinic import services as clinic_services
from clinic.models import Enrolment
from sessions.models import Session, SessionKind
from tests.factories import PatientFactory, ProgramFactory, protocol_named
from tests.helpers import built_once_for_the_module, make_people

from .conftest import build_program_with_history, preparations, rate_at

NOW = datetime.datetime(2026, 3, 12, 12, 0, tzinfo=datetime.UTC)
EARLIER = tuple(3.0 + 0.25 * (i % 9) for i in range(20))  # 3.0 ... 5.0, twenty patients


def _point(rid, bond, days_ago, step_id, order):
    return rules.AlliancePoint(
        response_id=rid,
        at=NOW - datetime.timedelta(days=days_ago),
        bond=bond,
        total=4.0,
        step_id=step_id,
        step_order=order,
    )


def _facts(*points, values=EARLIER):
    return rules.Facts(
        now=NOW,
        alliance=list(points),
        step_bands={
            1: rules.StepBand(1, "Preparation 1", values),
            2: rules.StepBand(2, "Preparation 2", values),
        },
    )


DEFAULT_THRESHOLDS = rules.Thresholds()


def _off_track(facts, thresholds=DEFAULT_THRESHOLDS):
    return [d for d in rules.evaluate(facts, thresholds) if d.kind == rules.Kind.OFF_TRACK]


# --- the rule, pure -------------------------------------------------------------------


def test_off_track_is_raised_just_below_the_10th_percentile_and_not_at_it():
    cut = float(np.percentile(EARLIER, 10))
    assert cut == pytest.approx(3.0)  # two of twenty at 3.0, one at 3.25 ...
    below = _off_track(_facts(_point(1, 2.75, 1, 2, 2)))
    at = _off_track(_facts(_point(1, 3.0, 1, 2, 2)))
    assert [d.kind for d in below] == [rules.Kind.OFF_TRACK]
    assert at == []
    evidence = below[0].evidence
    assert evidence["n"] == 20 and evidence["step"] == "Preparation 2"
    assert evidence["percentile_rank"] == 0.0
    assert evidence["band_source"] == "clinic"


def test_the_evidence_in_words_names_the_bond_step_percentile_and_n():
    values = tuple(np.linspace(2.6, 5.0, 46))
    decision = _off_track(_facts(_point(1, 2.75, 1, 2, 2), values=values))[0]
    # scipy's weak percentile rank: share of the 46 at or below 2.75.
    expected_rank = round(100 * sum(v <= 2.75 for v in values) / 46, 1)
    assert decision.evidence["percentile_rank"] == expected_rank
    words = summary.summarise("off_track", decision.evidence)
    assert words.startswith(
        f"Bond 2.8 at preparation 2: {summary.ordinal(expected_rank)} percentile of 46 earlier "
        "patients at this step"
    )


def test_a_fall_from_the_25th_percentile_or_above_is_more_severe_and_said():
    steady = _off_track(_facts(_point(1, 2.75, 8, 1, 1), _point(2, 2.5, 1, 2, 2)))
    fell = _off_track(_facts(_point(1, 4.5, 8, 1, 1), _point(2, 2.5, 1, 2, 2)))
    assert steady[0].severity == rules.Severity.MEDIUM and steady[0].evidence["fell_from"] is None
    assert fell[0].severity == rules.Severity.HIGH
    assert fell[0].evidence["fell_from"]["step"] == "Preparation 1"
    assert "down from 4.5 at preparation 1" in summary.summarise("off_track", fell[0].evidence)


def test_a_later_step_back_in_the_band_clears_it_and_too_few_patients_never_raise_it():
    assert _off_track(_facts(_point(1, 2.5, 8, 1, 1), _point(2, 4.0, 1, 2, 2))) == []
    few = _facts(_point(1, 2.0, 1, 2, 2), values=EARLIER[:19])
    assert _off_track(few) == []
    assert _off_track(few, dataclasses.replace(rules.Thresholds(), band_min_patients=19))


def test_a_band_below_the_minimum_is_the_published_default_labelled():
    band = bands.band_of("bond", [4.0] * 5, min_n=20)
    assert (band.source, band.p10, band.p25, band.n) == ("default", 3.5, None, 5)
    clinic = bands.band_of("bond", EARLIER, min_n=20)
    assert clinic.source == "clinic"
    assert (clinic.p10, clinic.p25, clinic.p50) == tuple(
        float(np.percentile(EARLIER, q)) for q in (10, 25, 50)
    )


def test_a_sweeps_shared_band_gives_each_patient_the_numbers_of_the_others_alone():
    # Uneven, with ties, so leaving out one of equal values or an interpolation slip shows.
    table = [3.0, 2.25, 4.5, 2.25, 3.75, 4.0, 1.5, 4.5, 3.25, 2.75, 4.25]
    ordered, memo = np.sort(table), {}
    for mine in range(len(table)):
        others = table[:mine] + table[mine + 1 :]
        shared = bands.Others(ordered, table[mine], memo)
        assert sorted(shared) == sorted(others) and len(shared) == len(others)
        for q in (10, 25, 50):
            assert bands.percentile(shared, q) == float(np.percentile(others, q))
        for score in (1.0, 2.25, 3.1, 4.5, 5.0):
            assert bands.rank(shared, score) == bands.rank(others, score)
    assert bands.rank(table, 2.25) == 27.3  # 3 of 11 at or below, scipy's "weak"


def test_a_program_with_no_history_shows_the_default_labelled(people, client_for):
    program = ProgramFactory(protocol=protocol_named("Psilocybin for depression, two doses"))
    people.enrolment.status = "completed"
    people.enrolment.save(update_fields=["status"])
    enrolment = clinic_services.patient_enrol(
        actor=people.admin,
        patient=people.patient,
        program=program,
        start_date=timezone.localdate() - datetime.timedelta(days=10),
    )
    rate_at(people, people.patient, preparations(enrolment)[0], 2.5)
    trajectories.recompute_expected_bands()
    steps = trajectories.patient_steps(patient=people.patient, min_n=20)
    assert steps and all(step.band.is_default for step in steps)
    assert steps[0].bond == 2.5 and steps[0].band.n == 0
    page = client_for(people.coach).get(reverse("patient_flags", args=[people.patient.public_id]))
    assert "default 3.5 (not enough data)" in page.content.decode()
    services.recompute_patient(patient_id=people.patient.pk)
    assert not Flag.objects.filter(kind="off_track").exists()


# --- the table, the flag and readiness on the database --------------------------------------


@pytest.fixture(scope="class")
def history_once(django_db_setup, django_db_blocker):
    """The personas and the program with history, built once for the class (about a
    second a test): each test reads and adds to them in its own savepoint."""
    with built_once_for_the_module(django_db_blocker):
        people = make_people()
        enrolment, earlier = build_program_with_history(people)
        yield people, enrolment.pk, tuple(earlier)


class TestOnAProgramWithHistory:
    """Tests that read one program with history (each in its own savepoint, so what one adds
    is gone for the next): built once for the class, not once a test."""

    @pytest.fixture
    def people(self, history_once, db):
        """The shared personas read afresh, so what one test changes on them in Python (not
        only in the database) is not seen by the next."""
        shared, _, _ = history_once
        return SimpleNamespace(
            **{name: type(row).objects.get(pk=row.pk) for name, row in vars(shared).items()}
        )

    @pytest.fixture
    def program_with_history(self, history_once, people):
        _, enrolment_pk, earlier = history_once
        return Enrolment.objects.get(pk=enrolment_pk), list(earlier)

    def test_the_nightly_job_writes_each_steps_percentiles_and_is_idempotent(
        self, program_with_history
    ):
        enrolment, earlier = program_with_history
        result = trajectories.recompute_expected_bands()
        first = preparations(enrolment)[0]
        row = ExpectedBand.objects.get(step=first.protocol_step, measure="bond")
        assert row.n == 6
        assert (row.p10, row.p25, row.p50) == pytest.approx(
            [float(np.percentile(earlier, q)) for q in (10, 25, 50)]
        )
        assert ExpectedBand.objects.filter(measure="total").count() == 2
        snapshot = list(ExpectedBand.objects.order_by("pk").values("pk", "n", "p10", "values"))
        again = trajectories.recompute_expected_bands()
        assert again == result
        assert (
            list(ExpectedBand.objects.order_by("pk").values("pk", "n", "p10", "values")) == snapshot
        )

    def test_the_sweep_reads_each_bond_band_as_stored(self, program_with_history):
        """`load_bond_bands` reads the stored pairs from their text, not through JSON: the same
        numbers, bit for bit, for every step (one of them empty) and for a subset of steps."""
        enrolment, _ = program_with_history
        trajectories.recompute_expected_bands()
        rows = list(ExpectedBand.objects.filter(measure="bond").select_related("step"))
        empty = ExpectedBand.objects.create(
            step=preparations(enrolment)[2].protocol_step,
            measure="bond",
            n=0,
            p10=0,
            p25=0,
            p50=0,
            values=[],
            computed_at=timezone.now(),
        )
        rows[0].values = [[pid, value + 1 / 3] for pid, value in rows[0].values]  # long decimals
        rows[0].save()
        loaded = trajectories.load_bond_bands()
        assert set(loaded) == {row.step_id for row in rows} | {empty.step_id}
        for row in rows:
            label, ordered, own, _ = loaded[row.step_id]
            stored = np.asarray(row.values, dtype=float).reshape(-1, 2)
            assert label == row.step.label
            assert ordered.tobytes() == np.sort(stored[:, 1]).tobytes()
            assert own == {int(pid): value for pid, value in stored.tolist()}
        assert len(loaded[empty.step_id][1]) == 0 and loaded[empty.step_id][2] == {}
        assert set(trajectories.load_bond_bands(step_ids=[rows[0].step_id])) == {rows[0].step_id}

    def test_a_failing_night_leaves_yesterdays_bands(
        self, program_with_history, people, monkeypatch
    ):
        enrolment, _ = program_with_history
        trajectories.recompute_expected_bands()
        yesterday = list(ExpectedBand.objects.order_by("pk").values())
        rate_at(people, people.patient, preparations(enrolment)[0], 1.0)  # would change the band
        calls = {"n": 0}
        real = bands.percentile

        def fails_on_the_fourth(values, q):
            calls["n"] += 1
            if calls["n"] == 4:
                raise FloatingPointError("a fault half-way through the night")
            return real(values, q)

        monkeypatch.setattr(trajectories.bands, "percentile", fails_on_the_fourth)
        with pytest.raises(FloatingPointError):
            trajectories.recompute_expected_bands()
        assert list(ExpectedBand.objects.order_by("pk").values()) == yesterday

    def test_off_track_is_raised_and_cleared_around_the_10th_percentile(
        self, people, program_with_history
    ):
        enrolment, earlier = program_with_history
        trajectories.recompute_expected_bands()
        first, second, third = preparations(enrolment)[:3]
        cut = float(np.percentile(earlier, 10))  # 3.625
        low = rate_at(people, people.patient, first, 3.5)  # just below
        trajectories.recompute_expected_bands()  # the patient's own value joins the table ...
        services.recompute_patient(patient_id=people.patient.pk)
        flag = Flag.objects.get(patient=people.patient, kind="off_track", status="open")
        # ... but is left out of the band the patient is compared with.
        assert flag.evidence["n"] == 6 and flag.evidence["cut"] == pytest.approx(cut)
        assert flag.evidence["response_id"] == low.pk
        # One of the six others rated 3.5 too: scipy's weak rank counts ties, 1 / 6.
        assert flag.evidence["percentile_rank"] == 16.7
        assert services.selectors.flag_summary(flag).startswith(
            "Bond 3.5 at preparation 1: 17th percentile of 6 earlier patients at this step"
        )
        # At the next step, at the 10th percentile of the others: cleared.
        rate_at(people, people.patient, second, 3.75)
        services.recompute_patient(patient_id=people.patient.pk)
        flag.refresh_from_db()
        assert flag.status == Flag.Status.AUTO_RESOLVED
        assert not Flag.objects.filter(patient=people.patient, kind="off_track", status="open")
        assert third  # the schedule has a third preparation; no band there yet (no history)

    def test_a_sweep_reads_the_bands_once_and_decides_the_same(self, people, program_with_history):
        enrolment, _ = program_with_history
        rate_at(people, people.patient, preparations(enrolment)[0], 3.5)
        trajectories.recompute_expected_bands()
        services.recompute_patients(patient_ids=[people.patient.pk])
        swept = Flag.objects.get(patient=people.patient, kind="off_track", status="open")
        Flag.objects.all().delete()
        services.recompute_patient(patient_id=people.patient.pk)
        alone = Flag.objects.get(patient=people.patient, kind="off_track", status="open")
        assert swept.evidence == alone.evidence

    def test_an_open_off_track_flag_puts_the_dosing_at_risk(self, people, program_with_history):
        enrolment, _ = program_with_history
        trajectories.recompute_expected_bands()
        rate_at(people, people.patient, preparations(enrolment)[0], 2.5)
        services.recompute_patient(patient_id=people.patient.pk)
        dosing = Session.objects.filter(enrolment=enrolment, kind=SessionKind.DOSING).first()
        answer = caseload.readiness_of(dosing)
        texts = [r.text for r in answer.risks]
        assert any(t.startswith("Open flag: Off track for this step. Bond 2.5") for t in texts)

    def test_the_dashboard_draws_the_band_and_the_flags_page_the_percentile(
        self, people, program_with_history, client_for
    ):
        enrolment, _ = program_with_history
        rate_at(people, people.patient, preparations(enrolment)[0], 4.0)
        trajectories.recompute_expected_bands()
        facts = dashboard.dashboard_facts(patient=people.patient)
        clinic_bands = [b for b in facts.bands if not b.is_default]
        assert [b.label for b in clinic_bands] == ["Preparation 1", "Preparation 2"]
        assert clinic_bands[0].patient_bond == 4.0 and clinic_bands[0].percentile_rank == 50.0
        chart = charts.alliance_chart(facts)
        names = [trace.get("name") for trace in chart.figure["data"]]
        assert "Expected bond: 10th to 25th percentile" in names
        assert "Expected bond: published default (too few earlier patients)" in names
        page = client_for(people.coach).get(
            reverse("patient_dashboard", args=[people.patient.public_id])
        )
        assert "Expected bond: 10th to 25th percentile" in page.content.decode()
        flags_page = client_for(people.coach).get(
            reverse("patient_flags", args=[people.patient.public_id])
        )
        body = flags_page.content.decode()
        assert "50th" in body
        for caption in ("WAI-SR bond (mean)", "WAI-SR total (mean)", "SRS total"):
            assert f"{caption} at each step of the protocol" in body
        other = client_for(people.other_coach).get(
            reverse("patient_flags", args=[people.patient.public_id])
        )
        assert other.status_code == 404

    def test_the_nightly_task_runs_the_job_under_its_lock(self, program_with_history):
        from alliance import tasks

        result = tasks.recompute_expected_bands.apply().get()
        assert result["bands"] == ExpectedBand.objects.count() > 0

    def test_the_dashboard_shows_refreshed_bands_and_new_ratings_at_once(
        self, people, program_with_history, client_for
    ):
        """Each process keeps the bands' values between requests (trajectories._band_pairs);
        a band refresh, even in the same transaction, and a new rating are seen at once."""
        enrolment, earlier = program_with_history
        rate_at(people, people.patient, preparations(enrolment)[0], 4.0)
        trajectories.recompute_expected_bands()
        url = reverse("patient_dashboard", args=[people.patient.public_id])
        assert client_for(people.coach).get(url).status_code == 200  # the values are kept now
        before = dashboard.dashboard_facts(patient=people.patient).bands[0]
        assert (before.n, before.patient_bond, before.percentile_rank) == (6, 4.0, 50.0)

        late = clinic_services.patient_enrol(
            actor=people.admin,
            patient=PatientFactory(),
            program=enrolment.program,
            start_date=timezone.localdate() - datetime.timedelta(days=10),
        )
        rate_at(people, late.patient, preparations(late)[0], 1.5)
        rate_at(people, people.patient, preparations(enrolment)[0], 3.0)  # now a mean of 3.5
        trajectories.recompute_expected_bands()

        after = dashboard.dashboard_facts(patient=people.patient).bands[0]
        others = [1.5, *earlier]
        assert (after.n, after.patient_bond) == (7, 3.5)
        assert after.p10 == bands.percentile(others, 10) != before.p10
        assert after.percentile_rank == bands.rank(others, 3.5)
        page = client_for(people.coach).get(url).content.decode()
        assert f"<td>{charts._num(after.p10)}</td>" in page
