import datetime
import zoneinfo
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from clinic import services as clinic_services
from clinic.models import Program
from sessions import services
from sessions.models import Attendance, Protocol, Session, SessionKind
from tests.factories import EnrolmentFactory, PatientFactory, ProgramFactory, protocol_named

pytestmark = pytest.mark.django_db
LONDON = zoneinfo.ZoneInfo("Europe/London")


def _enrol(people, program, start=datetime.date(2026, 3, 2), patient=None):
    return clinic_services.patient_enrol(
        actor=people.admin, patient=patient or PatientFactory(), program=program, start_date=start
    )


def _local(session):
    return session.scheduled_start.astimezone(LONDON)


# --- protocols and generated schedules ---------------------------------------------------


def test_shipped_protocols_are_loaded_and_loading_again_changes_nothing():
    names = set(Protocol.objects.values_list("name", flat=True))
    assert names == {
        "Psilocybin for depression, two doses",
        "Ketamine-assisted therapy series",
        "Group psilocybin program",
    }
    steps = list(Protocol.objects.get(name="Ketamine-assisted therapy series").steps.values())
    services.load_protocols()
    assert Protocol.objects.count() == 3
    again = Protocol.objects.get(name="Ketamine-assisted therapy series").steps.values()
    assert list(again) == steps


@pytest.mark.shifted_clock
def test_psilocybin_protocol_generates_the_trial_schedule(people):
    program = ProgramFactory(protocol=protocol_named("Psilocybin for depression, two doses"))
    enrolment = _enrol(people, program)
    sessions = list(Session.objects.filter(enrolment=enrolment).order_by("scheduled_start"))
    kinds = [s.kind for s in sessions]
    assert kinds.count("preparation") == 4
    assert kinds.count("dosing") == 2
    assert kinds.count("integration") == 4
    assert kinds.count("follow_up") == 4
    dosings = [_local(s) for s in sessions if s.kind == "dosing"]
    assert dosings[0].date() == datetime.date(2026, 3, 20)  # day 18 from 2 March
    assert (dosings[1] - dosings[0]).days == 14  # two doses about two weeks apart
    follow_ups = [(_local(s).date() - dosings[1].date()).days for s in sessions[-4:]]
    assert follow_ups == [28, 91, 182, 365]
    assert all(a.patient == enrolment.patient for s in sessions for a in s.attendances.all())
    assert sessions[0].protocol_step.instruments_due[-2:] == ["wai-sr", "srs"]


@pytest.mark.shifted_clock
def test_ketamine_protocol_generates_six_dosings_each_followed_by_integration(people):
    program = ProgramFactory(
        modality="ketamine", protocol=protocol_named("Ketamine-assisted therapy series")
    )
    enrolment = _enrol(people, program)
    sessions = list(Session.objects.filter(enrolment=enrolment).order_by("scheduled_start"))
    kinds = [s.kind for s in sessions]
    assert kinds.count("dosing") == 6
    for index, kind in enumerate(kinds):
        if kind == "dosing":
            assert kinds[index + 1] == "integration"
    assert all(s.substance == "ketamine" for s in sessions if s.kind == "dosing")


@pytest.mark.shifted_clock
def test_group_protocol_shares_circles_and_gives_each_member_their_own_dosing(people):
    program = ProgramFactory(
        kind="group",
        capacity=4,
        start_date=datetime.date(2026, 3, 2),
        protocol=protocol_named("Group psilocybin program"),
    )
    first = _enrol(people, program)
    second = _enrol(people, program)
    group_sessions = Session.objects.filter(program=program, is_group=True)
    assert group_sessions.count() == 5
    for session in group_sessions:
        assert {a.patient_id for a in session.attendances.all()} == {
            first.patient_id,
            second.patient_id,
        }
    dosings = Session.objects.filter(program=program, kind="dosing")
    assert sorted(d.enrolment_id for d in dosings) == sorted([first.pk, second.pk])


@pytest.mark.shifted_clock
def test_a_late_joiner_is_not_put_on_circles_held_before_they_joined(people):
    program = ProgramFactory(
        kind="group",
        capacity=4,
        start_date=datetime.date(2026, 3, 2),
        protocol=protocol_named("Group psilocybin program"),
    )
    _enrol(people, program)
    late = _enrol(people, program, start=datetime.date(2026, 3, 10))
    attended = Session.objects.filter(is_group=True, attendances__patient=late.patient)
    assert all(_local(s).date() >= datetime.date(2026, 3, 10) for s in attended)
    assert attended.count() == 3


@pytest.mark.shifted_clock
def test_weekly_times_stay_at_local_time_across_the_clock_change(people):
    # Clocks go back in London on Sunday 25 October 2026: 10:00 stays 10:00 local, and the
    # UTC time moves from 09:00 to 10:00.
    program = ProgramFactory(protocol=protocol_named("Psilocybin for depression, two doses"))
    enrolment = _enrol(people, program, start=datetime.date(2026, 10, 16))
    preparations = Session.objects.filter(enrolment=enrolment, kind="preparation").order_by(
        "scheduled_start"
    )
    before, after = preparations[1], preparations[2]  # 21 and 26 October
    assert _local(before).date() == datetime.date(2026, 10, 21)
    assert _local(after).date() == datetime.date(2026, 10, 26)
    assert _local(before).hour == _local(after).hour == 10
    assert before.scheduled_start.astimezone(datetime.UTC).hour == 9
    assert after.scheduled_start.astimezone(datetime.UTC).hour == 10


def test_moving_one_session_leaves_the_others(people):
    program = ProgramFactory(protocol=protocol_named("Psilocybin for depression, two doses"))
    enrolment = _enrol(people, program, start=timezone.localdate() + datetime.timedelta(days=3))
    first, second = Session.objects.filter(enrolment=enrolment).order_by("scheduled_start")[:2]
    second_start = second.scheduled_start
    new_start = first.scheduled_start + datetime.timedelta(hours=3)
    services.session_reschedule(
        actor=people.admin,
        session=first,
        start=new_start,
        end=new_start + datetime.timedelta(hours=2),
    )
    second.refresh_from_db()
    assert second.scheduled_start == second_start


@pytest.mark.shifted_clock
def test_moving_with_shift_following_moves_every_later_session(people):
    program = ProgramFactory(protocol=protocol_named("Ketamine-assisted therapy series"))
    enrolment = _enrol(people, program, start=timezone.localdate() + datetime.timedelta(days=3))
    sessions = list(Session.objects.filter(enrolment=enrolment).order_by("scheduled_start"))
    before = [s.scheduled_start for s in sessions]
    delta = datetime.timedelta(days=2)
    services.session_reschedule(
        actor=people.admin,
        session=sessions[1],
        start=sessions[1].scheduled_start + delta,
        end=sessions[1].scheduled_end + delta,
        shift_following=True,
    )
    after = list(
        Session.objects.filter(enrolment=enrolment)
        .order_by("scheduled_start")
        .values_list("scheduled_start", flat=True)
    )
    assert after[0] == before[0]
    assert after[1:] == [moment + delta for moment in before[1:]]


# --- conflicts -----------------------------------------------------------------------------


def test_a_coach_cannot_be_double_booked(people, book):
    first = book(hours=24, facilitators=[people.coach])
    other_enrolment = EnrolmentFactory(program=people.enrolment.program)
    start = first.scheduled_start + datetime.timedelta(minutes=30)
    with pytest.raises(ValidationError) as exc:
        services.session_book(
            actor=people.admin,
            program=other_enrolment.program,
            enrolment=other_enrolment,
            kind="preparation",
            start=start,
            end=start + datetime.timedelta(hours=1),
            facilitators=[people.coach],
        )
    message = exc.value.message_dict["scheduled_start"][0]
    assert message.startswith("Cora Coach already facilitates Preparation on ")
    assert Session.objects.filter(enrolment=other_enrolment).count() == 0


def test_a_patient_cannot_be_double_booked(people, book):
    book(hours=24)
    with pytest.raises(ValidationError) as exc:
        book(hours=24.5)
    assert "The patient already has Preparation on" in exc.value.message_dict["scheduled_start"][0]
    assert Session.objects.filter(enrolment=people.enrolment).count() == 1


def test_a_room_cannot_be_double_booked(people, book, room):
    book(hours=24, room=room)
    other = EnrolmentFactory(program=people.enrolment.program)
    start = timezone.now() + datetime.timedelta(hours=24, minutes=59)
    with pytest.raises(ValidationError) as exc:
        services.session_book(
            actor=people.admin,
            program=other.program,
            enrolment=other,
            kind="integration",
            start=start,
            end=start + datetime.timedelta(hours=1),
            room=room,
        )
    assert "Room Aurora is booked for Preparation on" in str(exc.value)


def test_back_to_back_sessions_do_not_clash(people, book, room):
    first = book(hours=24, room=room, facilitators=[people.coach])
    second = book(hours=25, room=room, facilitators=[people.coach])
    assert second.scheduled_start == first.scheduled_end


def test_a_cancelled_session_frees_the_slot(people, book):
    first = book(hours=24)
    services.session_cancel(actor=people.admin, session=first, reason="Patient unwell")
    assert book(hours=24).status == "scheduled"


def test_moving_into_a_clash_is_refused_and_moves_nothing(people, book):
    first = book(hours=24, facilitators=[people.coach])
    second = book(hours=48, facilitators=[people.coach])
    planned = second.scheduled_start
    with pytest.raises(ValidationError):
        services.session_reschedule(
            actor=people.admin,
            session=second,
            start=first.scheduled_start,
            end=first.scheduled_end,
        )
    second.refresh_from_db()
    assert second.scheduled_start == planned


def test_end_before_start_is_refused(people):
    start = timezone.now() + datetime.timedelta(days=1)
    with pytest.raises(ValidationError) as exc:
        services.session_book(
            actor=people.admin,
            program=people.enrolment.program,
            enrolment=people.enrolment,
            kind="preparation",
            start=start,
            end=start - datetime.timedelta(minutes=1),
        )
    assert "end after it starts" in exc.value.message_dict["scheduled_end"][0]


# --- logging, dosing, readiness, withdrawal ------------------------------------------------


@pytest.mark.shifted_clock
def test_coach_logs_a_completed_session(people, past_session):
    services.session_log(
        actor=people.coach,
        session=past_session,
        status="completed",
        duration_minutes=55,
        notes="Talked through intentions.",
    )
    past_session.refresh_from_db()
    assert past_session.status == "completed" and past_session.duration_minutes == 55
    assert past_session.logged_by == people.coach
    assert past_session.attendances.get().status == Attendance.Status.ATTENDED


def test_a_no_show_needs_a_reason(people, past_session):
    with pytest.raises(ValidationError) as exc:
        services.session_log(actor=people.coach, session=past_session, status="no_show")
    assert "reason" in exc.value.message_dict["notes"][0]
    past_session.refresh_from_db()
    assert past_session.status == "scheduled"


@pytest.mark.shifted_clock
def test_a_future_session_cannot_be_logged(people, book):
    session = book(hours=48)
    with pytest.raises(ValidationError):
        services.session_log(
            actor=people.coach, session=session, status="completed", duration_minutes=60
        )


def _dosing(people, book):
    return book(hours=72, minutes=480, kind=SessionKind.DOSING)


@pytest.mark.parametrize(
    ("substance", "dose", "route", "weight", "field", "text"),
    [
        ("", Decimal("25"), "oral", None, "substance", "Name the substance"),
        ("psilocybin", None, "oral", None, "dose_mg", "Enter the dose"),
        ("psilocybin", Decimal("250"), "oral", None, "dose_mg", "outside the expected 1-60 mg"),
        ("mdma", Decimal("20"), "oral", None, "dose_mg", "outside the expected 40-180 mg"),
        ("ketamine", Decimal("35"), "iv", None, "weight_kg", "enter the weight"),
        ("ketamine", Decimal("350"), "iv", Decimal("70"), "dose_mg", "5.00 mg/kg is outside"),
    ],
)
def test_dosing_details_are_range_checked(
    people, book, substance, dose, route, weight, field, text
):
    session = _dosing(people, book)
    with pytest.raises(ValidationError) as exc:
        services.dosing_record(
            actor=people.admin,
            session=session,
            substance=substance,
            dose_mg=dose,
            route=route,
            weight_kg=weight,
        )
    assert text in exc.value.message_dict[field][0]
    session.refresh_from_db()
    assert session.dose_mg is None


def test_ketamine_dose_per_kg_is_derived(people, book):
    session = _dosing(people, book)
    services.dosing_record(
        actor=people.admin,
        session=session,
        substance="ketamine",
        dose_mg=Decimal("35"),
        route="iv",
        weight_kg=Decimal("70"),
    )
    session.refresh_from_db()
    assert session.dose_mg_per_kg == Decimal("0.5")


@pytest.mark.shifted_clock
def test_withdrawal_cancels_future_sessions_and_keeps_them(people):
    program = ProgramFactory(protocol=protocol_named("Ketamine-assisted therapy series"))
    enrolment = _enrol(people, program, start=timezone.localdate() + datetime.timedelta(days=2))
    count = Session.objects.filter(enrolment=enrolment).count()
    clinic_services.patient_change_status(
        actor=people.admin, patient=enrolment.patient, to_status="withdrawn", reason="Moved away"
    )
    sessions = Session.objects.filter(enrolment=enrolment)
    assert sessions.count() == count
    assert set(sessions.values_list("status", flat=True)) == {"cancelled"}


def test_assigning_a_coach_makes_them_facilitator_of_their_kind_of_sessions(people):
    program = ProgramFactory(protocol=protocol_named("Psilocybin for depression, two doses"))
    enrolment = _enrol(people, program, start=timezone.localdate() + datetime.timedelta(days=2))
    clinic_services.coach_assign(
        actor=people.admin, enrolment=enrolment, coach=people.coach, role="integration"
    )
    facilitated = Session.objects.filter(facilitators=people.coach, enrolment=enrolment)
    assert set(facilitated.values_list("kind", flat=True)) == {"integration", "follow_up"}


def test_modalities_have_dose_ranges():
    assert set(services.DOSE_RANGES_MG) == {
        Program.Modality.PSILOCYBIN,
        Program.Modality.MDMA,
        Program.Modality.KETAMINE,
    }


# --- the room constraint, moves together, groups, late joiners ------------------------------


def test_the_database_refuses_a_double_booked_room_even_without_the_services(people, book, room):
    from django.db import IntegrityError, transaction

    first = book(hours=24, room=room)
    with pytest.raises(IntegrityError, match="session_room_no_overlap"), transaction.atomic():
        Session.objects.create(
            program=first.program,
            enrolment=EnrolmentFactory(program=first.program),
            kind="integration",
            scheduled_start=first.scheduled_start + datetime.timedelta(minutes=30),
            scheduled_end=first.scheduled_end + datetime.timedelta(minutes=30),
            room=room,
        )
    services.session_cancel(actor=people.admin, session=first, reason="Room flooded")
    other = EnrolmentFactory(program=first.program)
    services.session_book(  # a cancelled session no longer holds the room
        actor=people.admin,
        program=other.program,
        enrolment=other,
        kind="integration",
        start=first.scheduled_start,
        end=first.scheduled_end,
        room=room,
    )


@pytest.mark.shifted_clock
@pytest.mark.parametrize("days", [1, -1])
def test_shifting_a_run_of_sessions_in_one_room_slides_each_into_the_next_slot(
    people, book, room, days
):
    sessions = [book(hours=48 + 24 * n, room=room, facilitators=[people.coach]) for n in range(3)]
    delta = datetime.timedelta(days=days)
    services.session_reschedule(
        actor=people.admin,
        session=sessions[0],
        start=sessions[0].scheduled_start + delta,
        end=sessions[0].scheduled_end + delta,
        room=room,
        shift_following=True,
    )
    for session in sessions:
        before = session.scheduled_start
        session.refresh_from_db()
        assert session.scheduled_start == before + delta and session.room == room


def test_sessions_moved_together_may_not_clash_with_each_other(people, book):
    first = book(hours=24, minutes=60)
    second = book(hours=26, minutes=60)
    with pytest.raises(ValidationError) as exc:
        services.session_reschedule(  # one hour later, and now five hours long
            actor=people.admin,
            session=first,
            start=first.scheduled_start + datetime.timedelta(hours=1),
            end=first.scheduled_start + datetime.timedelta(hours=6),
            shift_following=True,
        )
    assert "The new time overlaps Preparation on" in exc.value.message_dict["scheduled_start"][0]
    planned = second.scheduled_start
    second.refresh_from_db()
    assert second.scheduled_start == planned


def _group(capacity=4, start=datetime.date(2026, 3, 2)):
    return ProgramFactory(
        kind="group",
        capacity=capacity,
        start_date=start,
        protocol=protocol_named("Group psilocybin program"),
    )


def test_a_group_session_is_refused_when_a_member_is_busy(people):
    program = ProgramFactory(kind="group", capacity=4)
    member = EnrolmentFactory(program=program, patient=people.patient)
    EnrolmentFactory(program=program)  # a second member, free at that time
    start = timezone.now().replace(microsecond=0) + datetime.timedelta(days=3)
    services.session_book(
        actor=people.admin,
        program=people.enrolment.program,
        enrolment=people.enrolment,
        kind="integration",
        start=start,
        end=start + datetime.timedelta(hours=1),
    )
    with pytest.raises(ValidationError) as exc:
        services.session_book(
            actor=people.admin,
            program=program,
            kind="preparation",
            label="Circle",
            start=start + datetime.timedelta(minutes=30),
            end=start + datetime.timedelta(hours=2),
        )
    assert "Pat Example already has Integration on" in str(exc.value)
    assert not Session.objects.filter(program=member.program).exists()


@pytest.mark.shifted_clock
def test_a_withdrawn_members_cancelled_place_does_not_hide_the_others(people):
    program = _group(start=timezone.localdate() + datetime.timedelta(days=2))
    leaving, staying = _enrol(people, program), _enrol(people, program)
    clinic_services.patient_change_status(
        actor=people.admin, patient=leaving.patient, to_status="withdrawn", reason="Moved away"
    )
    circle = Session.objects.filter(program=program, is_group=True).earliest("scheduled_start")
    assert circle.attendances.get(patient=leaving.patient).status == "cancelled"
    conflicts = services.find_conflicts(
        start=circle.scheduled_start, end=circle.scheduled_end, patients=[staying.patient]
    )
    start = timezone.localtime(circle.scheduled_start)
    label = circle.label or circle.get_kind_display()
    assert conflicts == [f"The patient already has {label} on {start:%a %d %b %H:%M}."]


def test_joining_a_group_whose_circle_clashes_is_refused_and_writes_nothing(people):
    program = _group()
    _enrol(people, program)
    circle = Session.objects.filter(program=program, is_group=True).order_by("scheduled_start")[1]
    other_program = ProgramFactory()
    newcomer = PatientFactory()
    _enrol(people, other_program, patient=newcomer)
    services.session_book(
        actor=people.admin,
        program=other_program,
        enrolment=newcomer.enrolments.get(),
        kind="integration",
        start=circle.scheduled_start,
        end=circle.scheduled_end,
    )
    with pytest.raises(ValidationError) as exc:
        _enrol(people, program, patient=newcomer)
    assert "The patient already has Integration on" in str(exc.value)
    assert not newcomer.enrolments.filter(program=program).exists()
    assert not Attendance.objects.filter(patient=newcomer, session__program=program).exists()


@pytest.mark.shifted_clock
def test_a_late_joiner_gets_no_sessions_dated_before_they_joined(people):
    program = _group(start=datetime.date(2026, 3, 2))
    _enrol(people, program)
    late = _enrol(people, program, start=datetime.date(2026, 3, 30))  # after the dosing day
    theirs = Session.objects.filter(attendances__patient=late.patient)
    assert theirs.exists()
    assert all(_local(s).date() >= datetime.date(2026, 3, 30) for s in theirs)
    follow_up = theirs.get(kind="follow_up")
    assert _local(follow_up).date() == datetime.date(2026, 3, 23) + datetime.timedelta(days=28)


@pytest.mark.parametrize(
    ("route", "dose", "accepted"),
    [
        ("intranasal", Decimal("84"), True),
        ("intranasal", Decimal("250"), False),
        ("sublingual", Decimal("300"), True),
        ("oral", Decimal("450"), False),
        ("im", Decimal("3"), False),  # no weight: by injection it is dosed per kg
    ],
)
def test_ketamine_ranges_follow_the_route(people, book, route, dose, accepted):
    session = _dosing(people, book)
    record = lambda: services.dosing_record(  # noqa: E731
        actor=people.admin, session=session, substance="ketamine", dose_mg=dose, route=route
    )
    if accepted:
        record()
        session.refresh_from_db()
        assert session.dose_mg == dose
    else:
        with pytest.raises(ValidationError):
            record()
        session.refresh_from_db()
        assert session.dose_mg is None
