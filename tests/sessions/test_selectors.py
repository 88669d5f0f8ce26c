"""Reads about sessions that the pages share."""

import pytest

from sessions import selectors
from sessions.models import Session
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


def test_a_programs_upcoming_sessions_are_those_not_over_yet_in_start_order(book, people):
    over = book(hours=-3, minutes=60)  # never logged, so still "scheduled"
    under_way = book(hours=-1, minutes=120)
    later = book(hours=30)
    soon = book(hours=2)
    cancelled = book(hours=3)
    Session.objects.filter(pk=cancelled.pk).update(status=Session.Status.CANCELLED)
    program = people.enrolment.program

    listed = selectors.program_upcoming(program=program)

    booked = {over.pk, under_way.pk, later.pk, soon.pk, cancelled.pk}
    assert [s.pk for s in listed if s.pk in booked] == [under_way.pk, soon.pk, later.pk]
    starts = [s.scheduled_start for s in listed]
    assert starts == sorted(starts)
    assert [s.pk for s in selectors.program_upcoming(program=program, limit=2)] == [
        s.pk for s in listed[:2]
    ]


def test_a_program_with_more_sessions_under_way_than_it_lists_shows_the_earliest(book, people):
    """Sessions starting together come in the order they were booked, and sessions under way
    beyond the limit are left out as the ones starting later are."""
    import datetime

    from django.utils import timezone

    booked = [book(hours=10 * n) for n in range(1, 6)]
    now = timezone.now()
    together, earlier = booked[1:4], booked[4]
    Session.objects.filter(pk__in=[s.pk for s in together]).update(
        scheduled_start=now - datetime.timedelta(hours=1),
        scheduled_end=now + datetime.timedelta(hours=1),
    )
    Session.objects.filter(pk=earlier.pk).update(
        scheduled_start=now - datetime.timedelta(hours=2),
        scheduled_end=now + datetime.timedelta(hours=2),
    )
    program = people.enrolment.program

    listed = selectors.program_upcoming(program=program, limit=3)

    assert [s.pk for s in listed] == [earlier.pk, *sorted(s.pk for s in together)[:2]]
    assert [s.pk for s in selectors.program_upcoming(program=program)][:5] == [
        earlier.pk,
        *sorted(s.pk for s in together),
        booked[0].pk,
    ]


def test_beside_a_caseload_row_the_next_session_and_the_latest_one_the_user_has_to_log(
    book, people
):
    from sessions.models import Attendance

    earlier = book(hours=-12, minutes=60, facilitators=[people.coach])
    logged = book(hours=-10, minutes=60, facilitators=[people.coach])
    Session.objects.filter(pk=logged.pk).update(status=Session.Status.COMPLETED)
    latest = book(hours=-8, minutes=60, facilitators=[people.coach])  # over, not logged
    book(hours=-6, minutes=60, facilitators=[people.other_coach])  # not the coach's
    under_way = book(hours=-1, minutes=120)  # started, not over yet: the next session
    cancelled_place = book(hours=2)
    Attendance.objects.filter(session=cancelled_place).update(status=Attendance.Status.CANCELLED)
    called_off = book(hours=4)
    Session.objects.filter(pk=called_off.pk).update(status=Session.Status.CANCELLED)
    later = book(hours=30)

    patient = people.patient
    selectors.attach_sessions_beside([patient], user=people.coach)
    assert patient.next_session.pk == under_way.pk
    assert patient.next_session.public_id == under_way.public_id
    assert patient.next_session.scheduled_start == under_way.scheduled_start
    assert patient.next_session.get_kind_display() == "Preparation"
    assert patient.session_to_log.pk == latest.pk != earlier.pk

    selectors.attach_sessions_beside([patient], user=people.clinician)  # facilitated none
    assert patient.session_to_log is None
    Session.objects.filter(pk=under_way.pk).update(status=Session.Status.COMPLETED)
    selectors.attach_sessions_beside([patient], user=people.coach)
    assert patient.next_session.pk == later.pk


def test_a_patient_with_nothing_ahead_or_to_log_has_neither(people):
    selectors.attach_sessions_beside([people.patient], user=people.coach)
    assert people.patient.next_session is None and people.patient.session_to_log is None
    selectors.attach_sessions_beside([], user=people.coach)  # an empty page asks nothing


def test_the_next_dosing_is_the_nearest_one_ahead_that_is_still_on(people, dosing_in):
    dosing_in(9)
    called_off = dosing_in(2)
    Session.objects.filter(pk=called_off.pk).update(status=Session.Status.CANCELLED)
    nearest = dosing_in(5)
    held = dosing_in(1)
    Session.objects.filter(pk=held.pk).update(
        scheduled_start=held.scheduled_start.replace(year=held.scheduled_start.year - 1),
        scheduled_end=held.scheduled_end.replace(year=held.scheduled_end.year - 1),
    )
    without = PatientFactory()

    rows = [without, people.patient]
    selectors.attach_next_dosing(rows)

    assert people.patient.next_dosing_id == nearest.pk
    assert people.patient.next_dosing_public_id == nearest.public_id
    assert people.patient.next_dosing_at == nearest.scheduled_start
    assert without.next_dosing_id is None and without.next_dosing_at is None
    selectors.attach_next_dosing([])  # an empty page asks nothing
