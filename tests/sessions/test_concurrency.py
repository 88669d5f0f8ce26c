"""Two bookings at once for the same coach: the row locks make the second wait and then see
the first, so exactly one session is written and the other is refused with a message."""

import datetime
import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from sessions import services
from sessions.models import Session
from tests.factories import EnrolmentFactory
from tests.workers import waiting_on_a_lock

# Committed transactions on two connections; serialized rollback restores the shipped
# protocols (loaded by a data migration) for the tests that run after this one.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_two_simultaneous_bookings_of_one_coach_write_one_session(people):
    start = timezone.now().replace(microsecond=0) + datetime.timedelta(days=2)
    enrolments = [people.enrolment, EnrolmentFactory(program=people.enrolment.program)]
    first_holds_locks = threading.Event()
    second_is_waiting = threading.Event()
    outcomes = {}

    def book(index: int) -> None:
        try:
            with transaction.atomic():
                session = services.session_book(
                    actor=people.admin,
                    program=enrolments[index].program,
                    enrolment=enrolments[index],
                    kind="preparation",
                    start=start + datetime.timedelta(minutes=15 * index),
                    end=start + datetime.timedelta(minutes=60 + 15 * index),
                    facilitators=[people.coach],
                )
                if index == 0:  # keep the transaction open until the other one is queued
                    first_holds_locks.set()
                    second_is_waiting.wait(10)
            outcomes[index] = session
        except ValidationError as exc:
            outcomes[index] = exc
        finally:
            connection.close()

    first = threading.Thread(target=book, args=(0,))
    first.start()
    assert first_holds_locks.wait(10)
    second = threading.Thread(target=book, args=(1,))
    second.start()
    deadline = timezone.now() + datetime.timedelta(seconds=10)
    while not waiting_on_a_lock() and timezone.now() < deadline:
        threading.Event().wait(0.05)
    assert waiting_on_a_lock(), "the second booking should wait for the first one's locks"
    second_is_waiting.set()
    first.join(10)
    second.join(10)
    assert isinstance(outcomes[0], Session)
    assert isinstance(outcomes[1], ValidationError)
    assert "Cora Coach already facilitates Preparation on" in str(outcomes[1])
    assert Session.objects.filter(facilitators=people.coach).count() == 1
