"""The window of dates the clinic's records can plausibly hold.

A year typed as 0202 or 20266 is a typing mistake, not a session in the Roman empire: services
refuse dates outside these windows with a message next to the field, so forms show it and no
bad date reaches the database (or date arithmetic, which fails at the ends of the calendar).
"""

import datetime

from django.utils import timezone

# Clinic records (enrolments, sessions, questionnaires) start in this year.
EARLIEST = datetime.date(2000, 1, 1)
# Sessions and enrolments are planned at most this many years ahead.
YEARS_AHEAD = 5
EARLIEST_BIRTH = datetime.date(1900, 1, 1)
LONGEST_SESSION = datetime.timedelta(hours=24)


def latest_planned() -> datetime.date:
    today = timezone.localdate()
    return today + datetime.timedelta(days=365 * YEARS_AHEAD + YEARS_AHEAD // 4 + 1)


def birth_error(born: datetime.date | None) -> str | None:
    if born is None:
        return None
    if born > timezone.localdate():
        return "The date of birth cannot be in the future."
    if born < EARLIEST_BIRTH:
        return f"Check the year: the date of birth is before {EARLIEST_BIRTH.year}."
    return None


def _day(value) -> datetime.date:
    if isinstance(value, datetime.datetime):
        return timezone.localtime(value).date() if timezone.is_aware(value) else value.date()
    return value


def planned_day_error(value, *, what: str) -> str | None:
    """A date or date-time that must be from 2000 to five years ahead."""
    if value is None:
        return None
    day = _day(value)
    if day < EARLIEST:
        return f"Check the year: {what} cannot be before {EARLIEST.year}."
    if day > latest_planned():
        return f"Check the year: {what} cannot be more than {YEARS_AHEAD} years ahead."
    return None


def past_day_error(value, *, what: str) -> str | None:
    """A date or date-time that must be from 2000 up to today (answers, events that happened)."""
    if value is None:
        return None
    day = _day(value)
    if day < EARLIEST:
        return f"Check the year: {what} cannot be before {EARLIEST.year}."
    if day > timezone.localdate():
        return f"{what[0].upper()}{what[1:]} cannot be in the future."
    return None


def length_error(start, end, *, what: str) -> str | None:
    if start is None or end is None:
        return None
    if end - start > LONGEST_SESSION:
        return f"{what[0].upper()}{what[1:]} cannot last more than a day: check the dates."
    return None
