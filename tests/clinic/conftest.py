import datetime
from types import SimpleNamespace

import pytest
from django.utils import timezone

from sessions import services as session_services
from tests.factories import EnrolmentFactory
from tests.helpers import book_session


@pytest.fixture
def clash(people):
    """Two upcoming preparation sessions for the persona patient, nobody facilitating yet; the
    other coach already facilitates another patient's session at the time of the first."""

    def book(enrolment, day, label, facilitators=()):
        start = session_services.local_datetime(
            timezone.localdate() + datetime.timedelta(days=day), datetime.time(10, 0)
        )
        return book_session(
            enrolment,
            actor=people.admin,
            label=label,
            start=start,
            minutes=120,
            facilitators=facilitators,
        )

    other_patient = EnrolmentFactory(program=people.enrolment.program, enrolled_by=people.admin)
    return SimpleNamespace(
        clashing=book(people.enrolment, 2, "Preparation <b>1</b>"),
        free=book(people.enrolment, 4, "Preparation 2"),
        elsewhere=book(other_patient, 2, "Someone else's preparation", [people.other_coach]),
    )
