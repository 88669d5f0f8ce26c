import datetime

import pytest
from django.utils import timezone

from outcomes import services as outcome_services
from sessions.models import SessionKind
from tests.helpers import book_session
from tests.workers import queue, start_worker  # noqa: F401


def wai_answers(bond: int, rest: int = 4) -> dict[int, int]:
    """Every bond item (3, 5, 7, 9) answered `bond`, the others `rest`."""
    return {n: (bond if n in (3, 5, 7, 9) else rest) for n in range(1, 13)}


@pytest.fixture
def rate(people):
    def _rate(bond, *, days_ago=1, rest=4, code="wai-sr", answers=None):
        return outcome_services.response_record(
            actor=people.coach,
            patient=people.patient,
            version=outcome_services.latest_version(code),
            answers=answers or wai_answers(bond, rest),
            administered_at=timezone.now() - datetime.timedelta(days=days_ago),
        )

    return _rate


@pytest.fixture
def dosing_in(people):
    def _dosing_in(days):
        return book_session(
            people.enrolment,
            actor=people.admin,
            kind=SessionKind.DOSING,
            hours_from_now=24 * days,
            minutes=6 * 60,
        )

    return _dosing_in
