"""Session dates outside a plausible window are refused with a message, in services and forms."""

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from sessions import services
from sessions.models import Session, SessionKind

pytestmark = pytest.mark.django_db


def _at(year, month=3, day=2, hour=10):
    return timezone.make_aware(datetime.datetime(year, month, day, hour))


def _book(people, start, end):
    return services.session_book(
        actor=people.admin,
        program=people.enrolment.program,
        enrolment=people.enrolment,
        kind=SessionKind.PREPARATION,
        start=start,
        end=end,
    )


@pytest.mark.parametrize(
    "start, hours, field, message",
    [
        (_at(1999, 12, 31), 1, "scheduled_start", "cannot be before 2000"),
        (_at(1, 1, 1), 1, "scheduled_start", "cannot be before 2000"),
        (
            timezone.now() + datetime.timedelta(days=6 * 366),
            1,
            "scheduled_start",
            "more than 5 years ahead",
        ),
        (timezone.now() + datetime.timedelta(days=2), 25, "scheduled_end", "more than a day"),
    ],
    ids=["1999", "year-1", "six-years-ahead", "25-hours"],
)
def test_an_implausible_session_time_is_refused(people, start, hours, field, message):
    with pytest.raises(ValidationError) as refused:
        _book(people, start, start + datetime.timedelta(hours=hours))
    assert message in " ".join(refused.value.message_dict[field])
    assert not Session.objects.exists()


def test_a_day_long_session_in_five_years_is_fine(people):
    start = timezone.now().replace(microsecond=0) + datetime.timedelta(days=4 * 365)
    assert _book(people, start, start + datetime.timedelta(hours=24)).pk


def test_the_booking_form_shows_the_message(people, client_for):
    url = reverse("session_book", args=[people.patient.public_id, people.enrolment.pk])
    response = client_for(people.admin).post(
        url, {"kind": "preparation", "start": "0202-03-02T10:00", "end": "0202-03-02T11:00"}
    )
    assert response.status_code == 200
    assert "cannot be before 2000" in response.content.decode()
    assert not Session.objects.exists()


def test_a_session_cannot_be_moved_to_an_implausible_time(people, book):
    session = book(hours=48)
    with pytest.raises(ValidationError, match="more than 5 years ahead"):
        services.session_reschedule(
            actor=people.admin,
            session=session,
            start=_at(2099),
            end=_at(2099, hour=11),
        )


def test_dosing_times_outside_the_window_are_refused(people, book):
    dosing = book(hours=48, kind=SessionKind.DOSING)
    with pytest.raises(ValidationError) as refused:
        services.dosing_record(
            actor=people.admin,
            session=dosing,
            substance="psilocybin",
            dose_mg=25,
            route="oral",
            actual_start=_at(1990),
            actual_end=_at(1990, hour=16),
        )
    assert "cannot be before 2000" in refused.value.message_dict["actual_start"][0]
    start = timezone.now()
    with pytest.raises(ValidationError, match="more than a day"):
        services.dosing_record(
            actor=people.admin,
            session=dosing,
            substance="psilocybin",
            dose_mg=25,
            route="oral",
            actual_start=start,
            actual_end=start + datetime.timedelta(hours=30),
        )
