"""Answers dated before 2000 or in the future are refused, in the service and on the form."""

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from outcomes import services
from outcomes.models import Response

pytestmark = pytest.mark.django_db
PHQ9 = {n: 1 for n in range(1, 10)} | {9: 0}


@pytest.mark.parametrize(
    "when, message",
    [
        (timezone.make_aware(datetime.datetime(1999, 12, 31, 12)), "before 2000"),
        (timezone.make_aware(datetime.datetime(1, 1, 2, 12)), "before 2000"),
        (timezone.now() + datetime.timedelta(days=1), "in the future"),
    ],
)
def test_answers_dated_outside_the_window_are_refused(people, when, message):
    with pytest.raises(ValidationError, match=message):
        services.response_record(
            actor=people.clinician,
            patient=people.patient,
            version=services.latest_version("phq-9"),
            answers=PHQ9,
            administered_at=when,
        )
    assert not Response.objects.exists()


def test_the_entry_form_shows_the_message(people, client_for):
    response = client_for(people.clinician).post(
        reverse("response_new", args=[people.patient.public_id, "phq-9"]),
        {
            "administered_at": "0199-01-01T10:00",
            "submission_key": "0f0e0d0c-0b0a-4908-8706-050403020100",
            **{f"item_{n}": str(v) for n, v in PHQ9.items()},
        },
    )
    assert response.status_code == 200
    assert "answers cannot be dated before 2000" in response.content.decode()
    assert not Response.objects.exists()
