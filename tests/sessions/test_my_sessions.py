"""My sessions as a week grid on a desk, and the sessions nobody will log (started, still
scheduled, no facilitator) on the clinicians' and admins' worklist."""

import datetime
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from sessions import services
from sessions.models import Room
from tests.helpers import book_session

pytestmark = pytest.mark.django_db


def _grid(html: str) -> str:
    return html[html.index('class="week-grid') : html.index('id="up-h"')]


@pytest.mark.shifted_clock
def test_the_desktop_grid_places_a_session_by_day_and_time_with_patient_room_and_log(
    people, client_for
):
    room = Room.objects.create(name="Garden room")
    # Yesterday at 14:30 local: in the past at any hour, and never running over midnight,
    # where the grid stops the entry at the end of its day.
    yesterday = timezone.localdate() - datetime.timedelta(days=1)
    past = book_session(
        people.enrolment,
        actor=people.admin,
        start=services.local_datetime(yesterday, datetime.time(14, 30)),
        facilitators=[people.coach],
        room=room,
    )
    local = timezone.localtime(past.scheduled_start)
    week = local.strftime("%G-W%V")
    html = client_for(people.coach).get(reverse("my_calendar"), {"week": week}).content.decode()
    grid = _grid(html)
    # The entry sits in its weekday's column, on the row of its hour (one row per half hour).
    placed = re.search(r'wk-entry [^"]*wk-col-(\d) wk-row-(\d+) wk-span-(\d+)', grid)
    column, row, span = (int(part) for part in placed.groups())
    hour = re.search(rf'wk-hour wk-row-(\d+)" aria-hidden="true">{local:%H}:00<', grid)
    hour_row = int(hour[1])
    assert column == local.weekday() + 2
    assert row == hour_row + (local.minute >= 30) and span >= 2
    assert people.patient.full_name in grid and "Garden room" in grid
    assert reverse("session_log", args=[past.public_id]) in grid
    # The same week as a list for phones, with the same Log button.
    phones = html[html.index('class="d-lg-none') : html.index('class="week-grid')]
    assert reverse("session_log", args=[past.public_id]) in phones


@pytest.mark.shifted_clock
def test_another_coachs_patient_is_not_named_on_my_grid(people, client_for):
    from tests.factories import CoachAssignmentFactory, EnrolmentFactory

    theirs = EnrolmentFactory(enrolled_by=people.admin)
    CoachAssignmentFactory(enrolment=theirs, coach=people.other_coach, assigned_by=people.admin)
    session = book_session(theirs, actor=people.admin, facilitators=[people.coach])
    week = timezone.localtime(session.scheduled_start).strftime("%G-W%V")
    html = client_for(people.coach).get(reverse("my_calendar"), {"week": week}).content.decode()
    assert theirs.patient.full_name not in html
    assert "Another participant" in _grid(html)


@pytest.mark.shifted_clock
@pytest.mark.parametrize("persona", ["clinician", "admin"])
def test_a_past_session_without_a_facilitator_is_on_the_worklist_until_it_is_logged(
    people, client_for, persona
):
    nobody = book_session(people.enrolment, actor=people.admin, hours_from_now=-2)
    covered = book_session(
        people.enrolment, actor=people.admin, hours_from_now=-5, facilitators=[people.coach]
    )
    later = book_session(people.enrolment, actor=people.admin, hours_from_now=30)
    client = client_for(getattr(people, persona))
    page = client.get(reverse("flag_worklist")).content.decode()
    assert "Sessions nobody will log" in page
    assert reverse("session_log", args=[nobody.public_id]) in page
    assert reverse("session_detail", args=[covered.public_id]) not in page
    assert reverse("session_detail", args=[later.public_id]) not in page
    assert people.patient.full_name in page
    services.session_log(
        actor=people.clinician, session=nobody, status="completed", duration_minutes=60
    )
    assert "Sessions nobody will log" not in client.get(reverse("flag_worklist")).content.decode()


@pytest.mark.shifted_clock
def test_a_coach_is_not_shown_sessions_nobody_facilitates(people, client_for):
    nobody = book_session(people.enrolment, actor=people.admin, hours_from_now=-2)
    page = client_for(people.coach).get(reverse("flag_worklist")).content.decode()
    assert reverse("session_detail", args=[nobody.public_id]) not in page
    assert datetime.timedelta(0) < timezone.now() - nobody.scheduled_start
