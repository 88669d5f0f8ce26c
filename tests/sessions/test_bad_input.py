"""Calendar weeks that do not exist are a 404, not a crash."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "week", ["9999-W52", "0001-W01", "1999-W52", "2101-W01", "2026-W54", "2026-W00", "abc", "\x00"]
)
def test_a_week_outside_the_calendar_is_a_404(people, client_for, week):
    client = client_for(people.coach)
    client.raise_request_exception = False
    assert client.get(reverse("my_calendar"), {"week": week}).status_code == 404


@pytest.mark.parametrize("week, monday", [("2026-W48", "23 November"), ("2000-W01", "3 January")])
def test_a_week_in_the_calendar_shows_with_its_neighbours(people, client_for, week, monday):
    html = client_for(people.coach).get(reverse("my_calendar"), {"week": week}).content.decode()
    assert monday in html
    assert 'href="?week=' in html


def test_no_week_is_this_week(people, client_for):
    assert client_for(people.coach).get(reverse("my_calendar")).status_code == 200
