"""Reads about instruments that belong to the instrument, not to one version's file."""

import datetime
import zoneinfo

import pytest
import time_machine
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from clinic import services as clinic_services
from clinic.models import Enrolment, Patient, Program
from outcomes import selectors, services
from outcomes.models import CompletionSummary
from outcomes.scoring import get_definition
from sessions import services as session_services
from sessions.models import Session
from tests.factories import EnrolmentFactory, PatientFactory, ProgramFactory, protocol_named
from tests.helpers import built_once_for_the_module, make_people


@pytest.mark.django_db
def test_newest_definitions_names_each_instrument_once_at_its_highest_version():
    newest = selectors.newest_definitions(["phq-9", "wai-sr", "no-such-code"])
    assert set(newest) == {"phq-9", "wai-sr"}
    assert newest["phq-9"]["version"] == "2"
    assert newest["phq-9"]["special"]["treatment_outcome"]["remission_max"] == 4
    assert newest["wai-sr"] == get_definition("wai-sr")


# --- follow-up completion per time point --------------------------------------------------

LONDON = zoneinfo.ZoneInfo("Europe/London")
START = datetime.date(2027, 1, 4)  # Dosing 1 on 22 January, Dosing 2 on 5 February
AFTER_THREE_MONTHS = datetime.date(2027, 5, 22)  # the 3-month window (7 May +/- 14) has shut


def _at(day: datetime.date, hhmm: str) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time.fromisoformat(hhmm), tzinfo=LONDON)


def _answer(actor, patient, code, at):
    version = services.latest_version(code)
    services.response_record(
        actor=actor,
        patient=patient,
        version=version,
        answers={str(item["number"]): 0 for item in version.definition["items"]},
        administered_at=at,
    )


def _calendar_tally(program, today) -> list[dict]:
    """What each member's own calendar says (`calendar_items`, the schedule read one
    enrolment at a time), counted per time point and instrument."""
    counts: dict[tuple, list[int]] = {}
    for item in selectors.calendar_items(
        enrolments=Enrolment.objects.filter(program=program).exclude(
            status=Enrolment.Status.WITHDRAWN
        ),
        today=today,
        keep=lambda point, day: not point.recurring and point.due_on <= day,
    ):
        for code, instrument in item.instruments.items():
            tally = counts.setdefault(
                (item.point.offset_days, item.point.label, instrument.short_name), [0, 0]
            )
            tally[0] += code in item.answered
            tally[1] += 1
    return [
        {"time_point": label, "instrument": name, "answered": answered, "due": due}
        for (_days, label, name), (answered, due) in sorted(counts.items())
    ]


@pytest.fixture(scope="module")
def follow_ups_once(django_db_setup, django_db_blocker):
    """Six patients in the two-dose psilocybin program from START, each an edge of the
    follow-up windows; the clock stops on AFTER_THREE_MONTHS for the module's tests.

    Built once for the module (about 0.4 s a test, for tests that mostly read it)."""
    with built_once_for_the_module(django_db_blocker):
        people = make_people()
        yield from _follow_ups(people)


@pytest.fixture
def follow_ups(follow_ups_once, db):
    """The shared program, in this test's own savepoint: what a test adds or changes (more
    members, a withdrawal, a shorter schedule, a stored count) is gone for the next. Read
    afresh, as a test may change the objects it is given (its protocol's schedule) in place."""
    return Program.objects.get(pk=follow_ups_once.pk)


def _follow_ups(people):
    with time_machine.travel(_at(START, "08:00"), tick=False) as traveller:
        program = ProgramFactory(protocol=protocol_named("Psilocybin for depression, two doses"))
        members = {}
        for name in ("edges", "outside", "withdrawn", "rated", "moved", "cancelled"):
            patient = PatientFactory(last_name=name.title())
            enrolment = clinic_services.patient_enrol(
                actor=people.admin, patient=patient, program=program, start_date=START
            )
            members[name] = (patient, enrolment)
        dosing_2 = {
            name: Session.objects.get(enrolment=enrolment, label="Dosing 2")
            for name, (_patient, enrolment) in members.items()
        }
        # Dosing 2 moved to 3 March: the 4-week point moves to 31 March, 3 months to 2 June.
        moved = dosing_2["moved"]
        session_services.session_reschedule(
            actor=people.admin,
            session=moved,
            start=_at(datetime.date(2027, 3, 3), "09:00"),
            end=_at(datetime.date(2027, 3, 3), "17:00"),
        )
        traveller.move_to(_at(datetime.date(2027, 2, 5), "12:00"))
        # Dosing 2 cancelled: the last dosing is Dosing 1, so 4 weeks is due on 19 February.
        session_services.session_log(
            actor=people.clinician,
            session=dosing_2["cancelled"],
            status=Session.Status.CANCELLED,
            notes="Unwell",
        )
        traveller.move_to(_at(AFTER_THREE_MONTHS + datetime.timedelta(days=1), "12:00"))
        answers = [
            # 3 months (23 April to 21 May, summer time): the first and last local minutes
            # count, although in UTC the first is on 22 April and the one after the last is
            # still on 21 May.
            ("edges", "phq-9", _at(datetime.date(2027, 4, 23), "00:30")),
            ("edges", "gad-7", _at(datetime.date(2027, 5, 21), "23:30")),
            ("outside", "phq-9", _at(datetime.date(2027, 4, 22), "23:30")),
            ("outside", "gad-7", _at(datetime.date(2027, 5, 22), "00:30")),
            # 4 weeks (26 February to 12 March): a day late.
            ("outside", "qids-sr-16", _at(datetime.date(2027, 3, 13), "10:00")),
            ("withdrawn", "grid-hamd-17", _at(datetime.date(2027, 3, 5), "10:00")),
            ("rated", "grid-hamd-17", _at(datetime.date(2027, 3, 5), "10:00")),
            # In the window the patient no longer has (it moved with Dosing 2).
            ("moved", "phq-9", _at(datetime.date(2027, 3, 5), "10:00")),
            # The last day of the cancelled patient's window (12 to 26 February).
            ("cancelled", "phq-9", _at(datetime.date(2027, 2, 26), "18:00")),
        ]
        for name, code, at in answers:
            _answer(people.clinician, members[name][0], code, at)
        clinic_services.patient_change_status(
            actor=people.admin,
            patient=members["withdrawn"][0],
            to_status=Patient.Status.WITHDRAWN,
            reason="Moved away",
        )
        # A finished enrolment still counts.
        Enrolment.objects.filter(pk=members["rated"][1].pk).update(
            status=Enrolment.Status.COMPLETED
        )
        yield program


def _shown(rows) -> dict[tuple[str, str], str]:
    return {(r["time_point"], r["instrument"]): f"{r['answered']} of {r['due']}" for r in rows}


@pytest.mark.django_db
def test_completion_counts_answers_in_each_window_by_the_clinics_local_date(follow_ups):
    shown = _shown(selectors.completion_by_time_point(program=follow_ups, today=AFTER_THREE_MONTHS))
    assert shown == {
        # Five due (the withdrawn patient left out), the moved one on 31 March.
        ("4 weeks", "PHQ-9"): "1 of 5",
        ("4 weeks", "QIDS-SR-16"): "0 of 5",
        ("4 weeks", "GAD-7"): "0 of 5",
        ("4 weeks", "GRID-HAMD-17"): "1 of 5",  # clinician-rated, counted
        # The moved patient's 3 months is not due until 2 June.
        ("3 months", "PHQ-9"): "1 of 4",
        ("3 months", "QIDS-SR-16"): "0 of 4",
        ("3 months", "GAD-7"): "1 of 4",
        ("3 months", "GRID-HAMD-17"): "0 of 4",
    }
    rows = selectors.completion_by_time_point(program=follow_ups, today=AFTER_THREE_MONTHS)
    assert [(r["time_point"], r["instrument"]) for r in rows][:4] == [
        ("4 weeks", "GAD-7"),
        ("4 weeks", "GRID-HAMD-17"),
        ("4 weeks", "PHQ-9"),
        ("4 weeks", "QIDS-SR-16"),
    ]  # time points in order, then instruments by name


@pytest.mark.django_db
@pytest.mark.parametrize(
    "today",
    [
        datetime.date(2027, 2, 18),  # nothing due yet
        datetime.date(2027, 2, 19),  # the cancelled patient's 4 weeks, due today
        datetime.date(2027, 3, 8),  # 4 weeks due for most, windows still open
        datetime.date(2027, 3, 31),  # the moved patient's 4 weeks
        AFTER_THREE_MONTHS,
        datetime.date(2028, 3, 1),  # every time point due
    ],
)
def test_completion_agrees_with_each_members_calendar(follow_ups, today):
    counted = selectors.completion_by_time_point(program=follow_ups, today=today)
    assert counted == _calendar_tally(follow_ups, today)


@pytest.mark.django_db
def test_completion_is_empty_without_a_schedule_and_costs_the_same_at_any_size(
    people, follow_ups, django_assert_num_queries
):
    assert selectors.completion_by_time_point(program=people.enrolment.program) == []
    program = Program.objects.get(pk=follow_ups.pk)
    with CaptureQueriesContext(connection) as six:
        selectors.completion_by_time_point(program=program, today=AFTER_THREE_MONTHS)
    for _ in range(6):
        EnrolmentFactory(program=follow_ups, start_date=START)
    program = Program.objects.get(pk=follow_ups.pk)
    with django_assert_num_queries(len(six.captured_queries)):
        selectors.completion_by_time_point(program=program, today=AFTER_THREE_MONTHS)


@pytest.mark.django_db
def test_the_program_page_reads_the_last_recent_count_and_counts_afresh_when_it_is_old(
    follow_ups,
):
    today = timezone.localdate()
    counted = selectors.completion_by_time_point(program=follow_ups, today=today)
    assert services.completion_summaries_refresh() >= 1
    program = Program.objects.get(pk=follow_ups.pk)
    shown = selectors.program_completion(program=program)
    assert shown.rows == counted
    assert shown.counted_at == CompletionSummary.objects.get(program=follow_ups).counted_at
    # A member withdraws: the page shows it at beat's next count, within five minutes.
    Enrolment.objects.filter(program=follow_ups, patient__last_name="Edges").update(
        status=Enrolment.Status.WITHDRAWN
    )
    fresh = selectors.completion_by_time_point(program=follow_ups, today=today)
    assert fresh != counted
    assert selectors.program_completion(program=program).rows == counted
    # Beat stopped: a count older than a quarter of an hour is not shown.
    CompletionSummary.objects.filter(program=follow_ups).update(
        counted_at=F("counted_at") - datetime.timedelta(minutes=16)
    )
    assert selectors.program_completion(program=program).rows == fresh
    services.completion_summaries_refresh()
    assert selectors.program_completion(program=program).rows == fresh


@pytest.mark.django_db
def test_the_program_page_counts_afresh_when_the_schedule_changed_since_the_count(follow_ups):
    services.completion_summaries_refresh()
    protocol = follow_ups.protocol
    schedule = protocol.measurement_schedule
    schedule[0]["time_points"] = schedule[0]["time_points"][:1]  # 4 weeks only
    protocol.measurement_schedule = schedule
    protocol.save(update_fields=["measurement_schedule"])
    program = Program.objects.get(pk=follow_ups.pk)
    shown = selectors.program_completion(program=program).rows
    assert {row["time_point"] for row in shown} == {"4 weeks"}
    assert shown == selectors.completion_by_time_point(program=program, today=timezone.localdate())
