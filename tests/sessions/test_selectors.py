"""Reads about sessions that the pages share."""

import pytest

from sessions import selectors
from sessions.models import Session

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
