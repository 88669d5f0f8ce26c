"""Per-patient cohort measures chosen in SQL: the same numbers as the Python computation
they replaced, in a number of queries that does not grow with the cohort."""

import datetime
import io

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from alliance import analytics, cohort_selectors, services
from alliance.exports import pseudonym_of
from alliance.models import CohortMeasures
from clinic.access import patients_visible_to
from clinic.models import Program, User
from outcomes import services as outcome_services
from outcomes.models import InstrumentVersion, Respondent, Response, Score
from sessions import services as session_services
from sessions.models import Attendance, Session, SessionKind
from tests.helpers import book_session, built_once_for_the_module, log_dosing_completed

# The seeded clinic's dates follow the clock; a fixed one keeps every run on the same data.
NOW = datetime.datetime(2026, 3, 10, 9, 30, tzinfo=datetime.UTC)


# --- the Python computation the SQL replaced, kept here as the reference -------------------


def _last_key(row):
    session = row["session_start"] or row["at"]
    return (row["at"], session, row["by_patient"], row["response_id"])


def _nearest(rows, target, half_width):
    window = datetime.timedelta(days=half_width)
    near = [r for r in rows if abs(r["at"] - target) <= window]
    return min(near, key=lambda r: (abs(r["at"] - target), r["at"])) if near else None


def reference_measures(*, user, depression, program=None):
    """Every score row loaded into Python, then each measure picked per patient."""
    attended = Attendance.objects.filter(
        patient__in=patients_visible_to(user),
        session__kind=SessionKind.DOSING,
        session__status=Session.Status.COMPLETED,
    ).exclude(status__in=[Attendance.Status.ABSENT, Attendance.Status.CANCELLED])
    if program is not None:
        attended = attended.filter(session__program=program)
    dosings = list(
        attended.values_list("patient_id", "patient__public_id", "session__scheduled_start")
    )
    rows = Score.objects.filter(
        response__patient__in=attended.values("patient_id"),
        response__version__instrument__code__in=[*analytics.INSTRUMENTS, depression],
        scale__in=[scale for scale, _ in analytics.ALLIANCE_SCALES],
    ).values_list(
        "response__patient_id",
        "response__version__instrument__code",
        "scale",
        "value",
        "mean",
        "response__administered_at",
        "response_id",
        "response__session__scheduled_start",
        "response__respondent",
        "response__version_id",
        "response__answers",
    )
    definitions = dict(InstrumentVersion.objects.values_list("pk", "definition"))
    scores = [
        {
            "patient_id": pid,
            "code": code,
            "scale": scale,
            "value": value,
            "mean": analytics.exact_mean(definitions[version], answers, scale)
            if mean is not None
            else None,
            "at": at,
            "response_id": response_id,
            "session_start": session_start,
            "by_patient": respondent == Respondent.PATIENT,
        }
        for (pid, code, scale, value, mean, at, response_id, session_start, respondent, version,
             answers) in rows
    ]  # fmt: skip
    first, last = {}, {}
    for pid, _, at in dosings:
        first[pid] = min(first.get(pid, at), at)
        last[pid] = max(last.get(pid, at), at)
    grouped = {}
    for score in sorted(scores, key=_last_key):
        grouped.setdefault((score["patient_id"], score["code"], score["scale"]), []).append(score)
    measures = {}
    for pid, first_dosing in first.items():
        last_dosing = last[pid]
        values = {}
        for scale, _ in analytics.ALLIANCE_SCALES:
            ratings = [r for r in grouped.get((pid, "wai-sr", scale), []) if r["mean"] is not None]
            before = [r for r in ratings if r["at"] < first_dosing]
            if before:
                values[f"prep_{scale}"] = before[-1]["mean"]
            after = [r for r in ratings if r["at"] > last_dosing]
            days, half = analytics.WEEK_AFTER
            week = _nearest(after, last_dosing + datetime.timedelta(days=days), half)
            if week is not None:
                values[f"week_{scale}"] = week["mean"]
        totals = [
            r
            for r in grouped.get((pid, depression, "total"), [])
            if r["value"] is not None and r["at"] > last_dosing
        ]
        for key, _, days, half in analytics.FOLLOW_UPS:
            hit = _nearest(totals, last_dosing + datetime.timedelta(days=days), half)
            if hit is not None:
                values[key] = hit["value"]
        for code, key in (("meq-30", "meq_peak"), ("piq", "piq_peak")):
            acute = [
                r["mean"]
                for r in grouped.get((pid, code, "total"), [])
                if r["mean"] is not None and r["at"] >= first_dosing
            ]
            if acute:
                values[key] = max(acute)
        measures[pid] = values
    pseudonyms = {pid: pseudonym_of(public_id) for pid, public_id, _ in dosings}
    return measures, pseudonyms, len(dosings)


# --- the seeded clinic, with ties the seed does not make ------------------------------------


def _record(patient, code, answers, at, *, session=None, respondent=None, actor=None):
    response = outcome_services.response_record(
        actor=actor or User.objects.get(email="admin@rapport.test"),
        patient=patient,
        version=outcome_services.latest_version(code),
        answers=answers,
        administered_at=at,
        session=session,
    )
    if respondent is not None:
        Response.objects.filter(pk=response.pk).update(respondent=respondent)
    return response


def _completed_dosing(people, start):
    """A six-hour dosing of the persona patient, booked and logged as completed."""
    dosing = book_session(
        people.enrolment, actor=people.admin, kind=SessionKind.DOSING, start=start, minutes=360
    )
    log_dosing_completed(dosing, actor=people.clinician, minutes=360)
    return dosing


def _add_ties(user):
    """For a few dosed patients: two WAI-SRs at the moment of their last preparation rating
    (their own, then one entered for them, later records than the seed's), and two equal
    MEQ-30 peaks after dosing."""
    measured = cohort_selectors.cohort_measures(user=user, depression="grid-hamd-17")
    patients = sorted(measured.measures)[:3]
    for pid in patients:
        first = (
            Attendance.objects.filter(patient_id=pid, session__kind=SessionKind.DOSING)
            .order_by("session__scheduled_start")
            .values_list("session__scheduled_start", flat=True)
            .first()
        )
        latest = (
            Response.objects.filter(
                patient_id=pid, version__instrument__code="wai-sr", administered_at__lt=first
            )
            .order_by("-administered_at")
            .first()
        )
        patient = latest.patient
        for bond, respondent in ((5, Respondent.PATIENT), (2, Respondent.CLINICIAN)):
            _record(
                patient,
                "wai-sr",
                {n: (bond if n in (3, 5, 7, 9) else 3) for n in range(1, 13)},
                latest.administered_at,
                session=latest.session,
                respondent=respondent,
            )
        # Two peaks of 149/30, shown as 4.97, from different answers: both are candidates.
        for lower in (1, 30):
            answers = {n: (4 if n == lower else 5) for n in range(1, 31)}
            peak = _record(patient, "meq-30", answers, first + datetime.timedelta(hours=lower))
            assert peak.scores.get(scale="total").mean == 4.97
    return patients


def _queries(user) -> int:
    with CaptureQueriesContext(connection) as ctx:
        measured = cohort_selectors.cohort_measures(user=user, depression="grid-hamd-17")
    return len(ctx.captured_queries), len(measured.measures)


def test_measures_take_the_same_queries_for_2_and_8_patients(db):
    with time_machine.travel(NOW, tick=False):
        call_command("seed_demo", patients=0, alumni=2, seed=5, stdout=io.StringIO())
        user = User.objects.get(email="clinician1@rapport.test")
        small, few = _queries(user)
        call_command("seed_demo", patients=0, alumni=8, seed=5, stdout=io.StringIO())
        large, many = _queries(user)
    assert (few, many) == (2, 8)
    assert small == large


def test_each_measure_is_taken_where_the_study_took_it(people):
    """One patient, two completed dosings (days 20 and 34), measures worked out by hand."""
    start = NOW - datetime.timedelta(days=200)

    def day(n):
        return start + datetime.timedelta(days=n)

    def wai(bond_items, at):
        answers = {n: 4 for n in range(1, 13)}
        answers.update(dict(zip((3, 5, 7, 9), bond_items, strict=True)))
        _record(people.patient, "wai-sr", answers, at, actor=people.admin)

    def phq(total, at):
        answers = {n: 0 for n in range(1, 10)} | {10: 0}
        for n in range(1, total + 1):
            answers[(n - 1) % 9 + 1] += 1
        _record(people.patient, "phq-9", answers, at, actor=people.admin)

    def meq(fours, at):
        answers = {n: (4 if n <= fours else 3) for n in range(1, 31)}
        _record(people.patient, "meq-30", answers, at, actor=people.admin)

    with time_machine.travel(NOW, tick=False):
        for n in (20, 34):
            _completed_dosing(people, day(n))
        wai((3, 3, 3, 3), day(5))
        wai((3, 4, 3, 4), day(15))  # the last before the first dosing: bond 3.5
        wai((5, 5, 4, 4), day(25))  # between the dosings: neither
        wai((4, 4, 4, 3), day(40))  # 6 days after the last dosing: bond 3.75
        wai((5, 5, 5, 4), day(43))  # 9 days: further from 7 than day 40
        phq(22, day(0))  # baseline, before dosing
        phq(8, day(34 + 30))  # 4 weeks (within 7 days)
        phq(5, day(34 + 91 + 20))  # 3 months ± 14: too late
        meq(30, day(10))  # before any dosing: ignored
        meq(0, day(20.5))  # 3.0
        meq(10, day(34.5))  # 100/30 after the second dosing: the peak
        measured = cohort_selectors.cohort_measures(user=people.clinician, depression="phq-9")
    assert measured.dosings == 2
    assert measured.measures == {
        people.patient.pk: pytest.approx(
            {
                "prep_bond": 3.5,
                "prep_total": 46 / 12,
                "prep_goal": 4.0,
                "prep_task": 4.0,
                "week_bond": 3.75,
                "week_total": 47 / 12,
                "week_goal": 4.0,
                "week_task": 4.0,
                "dep_4w": 8,
                "meq_peak": 100 / 30,
            },
            abs=1e-12,
        )
    }


def test_a_prorated_rating_has_its_exact_mean_from_the_answers(people):
    """The stored sum of a rating with an unanswered item is prorated (and rounded), so the
    exact item mean cannot come from it: the answers give it."""
    start = NOW - datetime.timedelta(days=100)
    with time_machine.travel(NOW, tick=False):
        _completed_dosing(people, start + datetime.timedelta(days=20))
        answers = {n: 4 for n in range(1, 13)} | {3: None, 9: 5}  # bond: 4, 4 and 5
        rating = _record(
            people.patient,
            "wai-sr",
            answers,
            start + datetime.timedelta(days=15),
            actor=people.admin,
        )
        measured = cohort_selectors.cohort_measures(user=people.clinician, depression="phq-9")
    bond = rating.scores.get(scale="bond")
    assert bond.prorated and bond.mean == 4.33  # what the SQL must not use
    assert measured.measures[people.patient.pk] == pytest.approx(
        {"prep_bond": 13 / 3, "prep_total": 45 / 11, "prep_goal": 4.0, "prep_task": 4.0},
        abs=1e-12,
    )


# --- the stored measures (CohortMeasures), kept by the flag recompute ------------------------


def _dosed_patients() -> list[int]:
    return sorted(
        set(
            Attendance.objects.filter(session__kind=SessionKind.DOSING).values_list(
                "patient_id", flat=True
            )
        )
    )


def _stored_rows() -> dict[int, tuple]:
    return {
        row.patient_id: (row.first_dosing, row.last_dosing, row.measures)
        for row in CohortMeasures.objects.all()
    }


def test_a_rating_saved_after_the_row_counts_at_once_and_the_recompute_stores_it(people):
    start = NOW - datetime.timedelta(days=100)
    with time_machine.travel(NOW, tick=False):
        _completed_dosing(people, start + datetime.timedelta(days=20))
        _record(
            people.patient,
            "phq-9",
            {n: (0 if n == 9 else 1) for n in range(1, 11)},
            start + datetime.timedelta(days=45),
            actor=people.admin,
        )
        services.recompute_patient(patient_id=people.patient.pk)
        before = cohort_selectors.cohort_measures(user=people.clinician, depression="phq-9")
    # Later: a rating nearer to 4 weeks after the dosing, saved through the services (which
    # marks the patient's flags stale, as a coach's save does).
    with time_machine.travel(NOW + datetime.timedelta(minutes=5), tick=False):
        _record(
            people.patient,
            "phq-9",
            {n: (0 if n == 9 else 2) for n in range(1, 11)},
            start + datetime.timedelta(days=48),
            actor=people.admin,
        )
        pending = cohort_selectors.cohort_measures(user=people.clinician, depression="phq-9")
        services.recompute_patient(patient_id=people.patient.pk)
        after = cohort_selectors.cohort_measures(user=people.clinician, depression="phq-9")
    assert (before.stored, pending.stored, after.stored) == (1, 0, 1)
    assert before.measures == {people.patient.pk: {"dep_4w": 8}}
    assert pending.measures == after.measures == {people.patient.pk: {"dep_4w": 16}}
    stored = CohortMeasures.objects.get(patient=people.patient).measures
    assert stored == {"phq-9:dep_4w": 16}


@pytest.mark.parametrize("refresh", ["sweep", "every patient"])
def test_a_sweep_writes_a_row_only_when_it_changed_and_drops_it_when_no_dosing_backs_it(
    people, refresh
):
    """The sweep compares before it writes: an unchanged row keeps the moment it was computed
    at; a new rating rewrites it; a dosing the patient turns out not to have attended takes
    the row away (in a sweep, or refreshing every patient's), as the live query then finds
    no dosing for them."""
    start = NOW - datetime.timedelta(days=100)
    swept = [people.patient.pk]
    with time_machine.travel(NOW, tick=False):
        dosing = _completed_dosing(people, start + datetime.timedelta(days=20))
        _record(
            people.patient,
            "phq-9",
            {n: (0 if n == 9 else 1) for n in range(1, 11)},
            start + datetime.timedelta(days=45),
            actor=people.admin,
        )
        services.recompute_patients(patient_ids=swept)
    first = CohortMeasures.objects.get(patient=people.patient)
    assert (first.measures, first.computed_at) == ({"phq-9:dep_4w": 8}, NOW)
    assert (first.first_dosing, first.last_dosing) == (dosing.scheduled_start,) * 2

    later = NOW + datetime.timedelta(minutes=5)
    with time_machine.travel(later, tick=False):
        services.recompute_patients(patient_ids=swept)
        assert CohortMeasures.objects.get(patient=people.patient).computed_at == NOW
        _record(
            people.patient,
            "phq-9",
            {n: (0 if n == 9 else 2) for n in range(1, 11)},
            start + datetime.timedelta(days=48),
            actor=people.admin,
        )
        services.recompute_patients(patient_ids=swept)
        rewritten = CohortMeasures.objects.get(patient=people.patient)
        assert (rewritten.measures, rewritten.computed_at) == ({"phq-9:dep_4w": 16}, later)

        session_services.session_correct(
            actor=people.clinician,
            session=dosing,
            status="completed",
            duration_minutes=360,
            notes="",
            reason="The patient did not come; another patient's record was entered.",
            attendance={people.patient.pk: Attendance.Status.ABSENT},
        )
        if refresh == "sweep":
            services.recompute_patients(patient_ids=swept)
        else:
            services.cohort_measures_refresh()
    assert not CohortMeasures.objects.filter(patient=people.patient).exists()
    assert cohort_selectors.patient_measures(patient_ids=swept) == {}


@pytest.fixture(scope="class")
def seeded_once(django_db_setup, django_db_blocker):
    with built_once_for_the_module(django_db_blocker):
        with time_machine.travel(NOW, tick=False):
            call_command("seed_demo", patients=3, alumni=8, seed=5, stdout=io.StringIO())
            clinician = User.objects.get(email="clinician1@rapport.test")
        yield clinician


class TestOnTheSeededClinic:
    """Tests that read one seeded clinic (each in its own savepoint, so what one adds is gone
    for the next): seeded once for the class, not once a test."""

    @pytest.fixture
    def seeded_clinic(self, seeded_once, db):
        return seeded_once

    @pytest.mark.parametrize("depression", [code for code, _ in analytics.DEPRESSION_MEASURES])
    def test_sql_measures_match_the_python_computation(self, seeded_clinic, depression):
        with time_machine.travel(NOW, tick=False):
            tied = _add_ties(seeded_clinic)
            measured = cohort_selectors.cohort_measures(user=seeded_clinic, depression=depression)
            expected, pseudonyms, dosings = reference_measures(
                user=seeded_clinic, depression=depression
            )
        assert len(expected) >= 8 and tied
        assert measured.pseudonyms == pseudonyms
        assert measured.dosings == dosings
        assert measured.measures.keys() == expected.keys()
        for pid, values in expected.items():
            assert measured.measures[pid] == pytest.approx(values, abs=1e-12), pid
        # The comparison covers every kind of measure, not just the ones that happen to exist.
        kinds = {key for values in expected.values() for key in values}
        assert {"prep_bond", "week_total", "dep_4w", "dep_12m", "meq_peak", "piq_peak"} <= kinds

    def test_a_program_filter_gives_the_same_measures_as_the_python_computation(
        self, seeded_clinic
    ):
        with time_machine.travel(NOW, tick=False):
            program = Program.objects.get(modality="ketamine")
            measured = cohort_selectors.cohort_measures(
                user=seeded_clinic, depression="phq-9", program=program
            )
            expected, _, dosings = reference_measures(
                user=seeded_clinic, depression="phq-9", program=program
            )
        assert measured.measures == pytest.approx(expected) if expected else not measured.measures
        assert measured.dosings == dosings

    @pytest.mark.parametrize("depression", ["grid-hamd-17", "phq-9"])
    def test_rows_from_the_sweep_and_the_per_patient_recompute_give_the_live_measures(
        self, seeded_clinic, depression
    ):
        """Table built by a sweep == table built one patient at a time == the live query (no rows)
        == the Python reference, ties included; and the page reads the rows when they are there."""
        with time_machine.travel(NOW, tick=False):
            tied = _add_ties(seeded_clinic)
            patients = _dosed_patients()
            CohortMeasures.objects.all().delete()
            live = cohort_selectors.cohort_measures(user=seeded_clinic, depression=depression)

            services.recompute_patients(patient_ids=patients)
            swept_rows = _stored_rows()
            swept = cohort_selectors.cohort_measures(user=seeded_clinic, depression=depression)

            CohortMeasures.objects.all().delete()
            for pid in patients:
                services.recompute_patient(patient_id=pid)
            one_by_one_rows = _stored_rows()
            one_by_one = cohort_selectors.cohort_measures(user=seeded_clinic, depression=depression)
            expected, pseudonyms, dosings = reference_measures(
                user=seeded_clinic, depression=depression
            )
        assert tied and len(expected) >= 8
        assert (live.stored, swept.stored, one_by_one.stored) == (0, len(expected), len(expected))
        assert swept_rows.keys() == set(expected) and swept_rows == one_by_one_rows
        for measured in (live, swept, one_by_one):
            assert measured.pseudonyms == pseudonyms and measured.dosings == dosings
            assert measured.measures.keys() == expected.keys()
            for pid, values in expected.items():
                assert measured.measures[pid] == pytest.approx(values, abs=1e-12), pid

    def test_the_upgrade_command_writes_the_rows_the_sweep_would(self, seeded_clinic):
        """An installation upgraded with patients already dosed fills the table once."""
        with time_machine.travel(NOW, tick=False):
            services.recompute_patients(patient_ids=_dosed_patients())
            swept = _stored_rows()
            CohortMeasures.objects.all().delete()
            out = io.StringIO()
            call_command("refresh_cohort_measures", stdout=out)
        assert swept and _stored_rows() == swept
        assert f"for {len(swept)} patient(s)" in out.getvalue()

    def test_a_filter_that_leaves_out_dosings_is_computed_live_from_the_rows_it_cannot_use(
        self,
        seeded_clinic,
    ):
        """A row holds the measures around all of a patient's dosings: where a filter keeps fewer,
        the page computes that patient live, and gets what the Python reference gets."""
        with time_machine.travel(NOW, tick=False):
            services.recompute_patients(patient_ids=_dosed_patients())
            program = Program.objects.get(modality="ketamine")
            measured = cohort_selectors.cohort_measures(
                user=seeded_clinic, depression="phq-9", program=program
            )
            expected, _, dosings = reference_measures(
                user=seeded_clinic, depression="phq-9", program=program
            )
            dosing_days = sorted(
                Attendance.objects.filter(session__kind=SessionKind.DOSING).values_list(
                    "session__scheduled_start__date", flat=True
                )
            )
            since = dosing_days[len(dosing_days) // 2]
            later = cohort_selectors.cohort_measures(
                user=seeded_clinic, depression="phq-9", start=since
            )
            CohortMeasures.objects.all().delete()
            later_live = cohort_selectors.cohort_measures(
                user=seeded_clinic, depression="phq-9", start=since
            )
        assert measured.measures == pytest.approx(expected) if expected else not measured.measures
        assert measured.dosings == dosings
        # Patients with dosings before the date are computed live: the same as with no rows.
        assert later.stored < len(later.patient_ids) and later_live.stored == 0
        assert later.measures == later_live.measures and later.dosings == later_live.dosings
