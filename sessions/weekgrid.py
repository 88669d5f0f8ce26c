"""Where each session of a week sits on the desktop week grid: a column per day and a row per
half hour, from the earliest start to the latest end of the week (at least the working day).
Pure arithmetic on local times; the template places entries with the CSS classes named here
(the CSP allows no inline styles)."""

import datetime
from dataclasses import dataclass

from django.utils import timezone

SLOT_MINUTES = 30
SLOTS_PER_DAY = 24 * 60 // SLOT_MINUTES
DAY_START, DAY_END = 8, 18  # hours always shown, so a quiet week still looks like a week
FIRST_ROW = 2  # row 1 holds the day names


@dataclass(frozen=True)
class Entry:
    session: object
    column: int  # 2..8: Monday..Sunday (column 1 holds the hours)
    row: int
    span: int  # half hours
    continues: bool  # runs past the end of the day (shown to midnight)


@dataclass(frozen=True)
class Grid:
    days: list[tuple[datetime.date, int]]
    hours: list[tuple[str, int]]
    entries: list[Entry]
    rows: int


def _slot(moment: datetime.datetime, day: datetime.date) -> int:
    """Half hours since `day`'s local midnight (a session ending after midnight: the day's end)."""
    local = timezone.localtime(moment)
    if local.date() > day:
        return SLOTS_PER_DAY
    return (local.hour * 60 + local.minute) // SLOT_MINUTES


def week_grid(days: dict[datetime.date, list]) -> Grid:
    placed = []
    first, last = DAY_START * 60 // SLOT_MINUTES, DAY_END * 60 // SLOT_MINUTES
    for day, sessions in days.items():
        for session in sessions:
            start = _slot(session.scheduled_start, day)
            end = max(start + 1, _slot(session.scheduled_end, day))
            end_local = timezone.localtime(session.scheduled_end)
            if end_local.minute % SLOT_MINUTES and end < SLOTS_PER_DAY:
                end += 1  # a session ending at 10:45 fills the 10:30 half hour too
            placed.append((day, session, start, min(end, SLOTS_PER_DAY)))
            first, last = min(first, start), max(last, min(end, SLOTS_PER_DAY))
    first -= first % 2  # start on the hour
    columns = {day: 2 + index for index, day in enumerate(days)}
    entries = [
        Entry(
            session=session,
            column=columns[day],
            row=FIRST_ROW + start - first,
            span=end - start,
            continues=end == SLOTS_PER_DAY
            and timezone.localtime(session.scheduled_end).date() > day,
        )
        for day, session, start, end in placed
    ]
    hours = [
        (f"{slot * SLOT_MINUTES // 60:02d}:00", FIRST_ROW + slot - first)
        for slot in range(first, last, 2)
    ]
    return Grid(days=list(columns.items()), hours=hours, entries=entries, rows=last - first)
