import datetime

import pytest
from django.utils import timezone

from sessions.models import Room, Session, SessionKind
from tests.helpers import book_session


@pytest.fixture
def book(people):
    """Book an individual session for the persona patient, starting `hours` from now.

    "Now" is read once per test, so sessions booked an hour apart are exactly an hour apart.
    """
    now = timezone.now().replace(microsecond=0)

    def _book(hours=24, minutes=60, *, facilitators=(), room=None, kind=SessionKind.PREPARATION):
        return book_session(
            people.enrolment,
            actor=people.admin,
            kind=kind,
            start=now + datetime.timedelta(hours=hours),
            minutes=minutes,
            facilitators=facilitators,
            room=room,
        )

    return _book


@pytest.fixture
def room(db):
    return Room.objects.create(name="Room Aurora")


@pytest.fixture
def past_session(people):
    """A preparation session two hours ago, facilitated by the persona coach."""
    session = book_session(
        people.enrolment, actor=people.admin, hours_from_now=-2, facilitators=[people.coach]
    )
    return Session.objects.get(pk=session.pk)
