"""Where sessions sit on the desktop week grid (sessions/weekgrid.py): pure arithmetic on the
clinic's local times, no database, no clock."""

import datetime
import zoneinfo
from types import SimpleNamespace

from django.conf import settings

from sessions.weekgrid import FIRST_ROW, week_grid

MONDAY = datetime.date(2026, 10, 19)


def _at(day: int, hhmm: str, minutes: int):
    zone = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    start = datetime.datetime.combine(
        MONDAY + datetime.timedelta(days=day), datetime.time.fromisoformat(hhmm), tzinfo=zone
    )
    return SimpleNamespace(
        scheduled_start=start, scheduled_end=start + datetime.timedelta(minutes=minutes)
    )


def _week(*sessions):
    days = {MONDAY + datetime.timedelta(days=n): [] for n in range(7)}
    for session in sessions:
        days[session.scheduled_start.date()].append(session)
    return days


def test_a_quiet_week_still_shows_the_working_day():
    grid = week_grid(_week())
    assert grid.hours[0] == ("08:00", FIRST_ROW) and grid.hours[-1][0] == "17:00"
    assert [column for _, column in grid.days] == [2, 3, 4, 5, 6, 7, 8]
    assert grid.entries == []


def test_a_session_takes_its_days_column_and_one_row_per_half_hour():
    wednesday_ten = _at(2, "10:00", 90)
    (entry,) = week_grid(_week(wednesday_ten)).entries
    assert entry.column == 4  # Monday is column 2
    assert entry.row == FIRST_ROW + 4  # 08:00 is the first row; 10:00 is four half hours on
    assert entry.span == 3 and not entry.continues


def test_a_session_ending_between_half_hours_fills_the_last_one():
    (entry,) = week_grid(_week(_at(0, "09:15", 30))).entries
    assert entry.row == FIRST_ROW + 2 and entry.span == 2  # 09:00-10:00 rows


def test_an_early_start_or_a_late_end_widens_the_day_for_the_whole_week():
    grid = week_grid(_week(_at(0, "06:30", 60), _at(4, "19:00", 120)))
    assert grid.hours[0] == ("06:00", FIRST_ROW) and grid.hours[-1][0] == "20:00"
    early, late = grid.entries
    assert early.row == FIRST_ROW + 1 and late.column == 6
    assert late.row + late.span == FIRST_ROW + grid.rows


def test_a_dosing_running_past_midnight_is_shown_to_the_end_of_its_day():
    grid = week_grid(_week(_at(5, "20:00", 8 * 60)))
    (entry,) = grid.entries
    assert entry.continues and entry.span == 8  # 20:00 to midnight
    assert grid.hours[-1][0] == "23:00"


def test_on_the_clock_change_day_a_session_keeps_its_local_hours():
    (entry,) = week_grid(_week(_at(6, "10:00", 60))).entries  # Sunday 25 October 2026
    assert entry.column == 8 and entry.row == FIRST_ROW + 4 and entry.span == 2
