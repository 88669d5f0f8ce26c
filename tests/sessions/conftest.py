import datetime

import pytest
from django.utils import timezone

from sessions import services
from sessions.models import Room, Session, SessionKind


@pytest.fixture
def book(people):
    """Book an individual session for the persona patient, starting `hours` from now.

    "Now" is read once per test, so sessions booked an hour apart are exactly an hour apart.
    """
    now = timezone.now().replace(microsecond=0)

    def _book(hours=24, minutes=60, *, facilitators=(), room=None, kind=SessionKind.PREPARATION):
        start = now + datetime.timedelta(hours=hours)
        return services.session_book(
            actor=people.admin,
            program=people.enrolment.program,
            enrolment=people.enrolment,
            kind=kind,
            start=start,
            end=start + datetime.timedelta(minutes=minutes),
            facilitators=list(facilitators),
            room=room,
        )

    return _book


@pytest.fixture
def room(db):
    return Room.objects.create(name="Room Aurora")


@pytest.fixture
def past_session(people):
    """A preparation session two hours ago, facilitated by the persona coach."""
    start = timezone.now().replace(microsecond=0) - datetime.timedelta(hours=2)
    session = services.session_book(
        actor=people.admin,
        program=people.enrolment.program,
        enrolment=people.enrolment,
        kind=SessionKind.PREPARATION,
        start=start,
        end=start + datetime.timedelta(minutes=60),
        facilitators=[people.coach],
    )
    return Session.objects.get(pk=session.pk)
