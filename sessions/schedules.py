"""Measurement schedules: when a protocol's questionnaires fall due on the calendar.

A protocol's `measurement_schedule` (from its data file) lists, besides the questionnaires
due after each step's session (`ProtocolStep.instruments_due`), entries that follow the
calendar whether or not a visit was logged:

- `offsets`: time points at fixed days from an anchor, each with a window, e.g. 28, 91, 182
  and 365 days after the last dosing, +/- 7 days;
- `recurring`: every N days from an anchor while the patient is in treatment (until another
  anchor), e.g. PHQ-9 every 14 days from enrolment until the last dosing.

Anchors are the enrolment's start and the first or last dosing booked for the enrolment
(a rescheduled dosing moves the dates that hang on it). These are pure functions over the
data; the outcomes app decides what is answered and what to send.
"""

import dataclasses
import datetime

from django.db import models


class ScheduleAnchor(models.TextChoices):
    ENROLMENT = "enrolment", "enrolment"
    FIRST_DOSING = "first_dosing", "the first dosing"
    LAST_DOSING = "last_dosing", "the last dosing"


class ScheduleKind(models.TextChoices):
    OFFSETS = "offsets", "At time points after an anchor"
    RECURRING = "recurring", "Recurring"


@dataclasses.dataclass(frozen=True)
class TimePoint:
    """One dated occasion of a schedule entry for one enrolment."""

    key: str  # stable across reschedules: the claim that makes one delivery per occasion
    label: str
    instruments: tuple[str, ...]
    due_on: datetime.date
    window_days: int
    offset_days: int  # from the anchor
    recurring: bool = False

    @property
    def opens_on(self) -> datetime.date:
        return self.due_on - datetime.timedelta(days=self.window_days)

    @property
    def closes_on(self) -> datetime.date:
        return self.due_on + datetime.timedelta(days=self.window_days)


def schedule_errors(schedule: list) -> list[str]:
    """Why a schedule cannot be used, in words; empty when it is sound."""
    if not isinstance(schedule, list):
        return ["The measurement schedule must be a list of entries."]
    errors = []
    by_anchor: dict[str, list[dict]] = {}
    for number, entry in enumerate(schedule, start=1):
        where = f"Schedule entry {number}"
        kind = entry.get("kind")
        if kind not in ScheduleKind.values:
            errors.append(f"{where}: kind must be one of {', '.join(ScheduleKind.values)}.")
            continue
        if entry.get("anchor") not in ScheduleAnchor.values:
            errors.append(f"{where}: anchor must be one of {', '.join(ScheduleAnchor.values)}.")
        if not entry.get("instruments"):
            errors.append(f"{where}: name at least one instrument.")
        if kind == ScheduleKind.OFFSETS:
            points = entry.get("time_points") or []
            errors += _offsets_errors(where, points)
            by_anchor.setdefault(entry.get("anchor"), []).extend(points)
        else:
            errors += _recurring_errors(where, entry)
    if not errors:
        # Time points are keyed by anchor and day: across entries they must not meet either.
        for anchor, points in by_anchor.items():
            errors += _overlaps(f"Time points after {anchor}", points)
    return errors


def _offsets_errors(where: str, points: list) -> list[str]:
    if not points:
        return [f"{where}: list at least one time point."]
    errors = []
    for point in points:
        if point.get("window_days", 0) < 0:
            errors.append(f"{where}, {point.get('label', '?')}: the window cannot be negative.")
        if point.get("days", -1) < 0:
            errors.append(f"{where}, {point.get('label', '?')}: days must be 0 or more.")
    return errors


def _overlaps(where: str, points: list) -> list[str]:
    errors = []
    ordered = sorted(points, key=lambda p: p["days"])
    for earlier, later in zip(ordered, ordered[1:], strict=False):
        if earlier["days"] + earlier.get("window_days", 0) >= later["days"] - later.get(
            "window_days", 0
        ):
            errors.append(
                f"{where}: the windows of {earlier['label']} (day {earlier['days']}) and "
                f"{later['label']} (day {later['days']}) overlap; an answer could count for both."
            )
    return errors


def _recurring_errors(where: str, entry: dict) -> list[str]:
    every, window = entry.get("every_days", 0), entry.get("window_days", 0)
    if window < 0:
        return [f"{where}: the window cannot be negative."]
    if every < 1:
        return [f"{where}: every_days must be at least 1."]
    if 2 * window >= every:
        return [
            f"{where}: a window of {window} days either side overlaps the next occasion "
            f"{every} days later."
        ]
    if entry.get("until") not in ScheduleAnchor.values:
        return [f"{where}: until must be one of {', '.join(ScheduleAnchor.values)}."]
    return []


def time_points(
    schedule: list, *, anchors: dict[str, datetime.date | None], prefix: str = ""
) -> list[TimePoint]:
    """Every dated occasion of the schedule, given the enrolment's anchor dates (None when the
    anchor has not happened or been booked yet: nothing hangs on it then)."""
    found = []
    for entry in schedule:
        anchor = anchors.get(entry["anchor"])
        if anchor is None:
            continue
        instruments = tuple(entry["instruments"])
        if entry["kind"] == ScheduleKind.OFFSETS:
            for point in entry["time_points"]:
                found.append(
                    TimePoint(
                        key=f"{prefix}{entry['anchor']}+{point['days']}",
                        label=point["label"],
                        instruments=instruments,
                        due_on=anchor + datetime.timedelta(days=point["days"]),
                        window_days=point.get("window_days", 0),
                        offset_days=point["days"],
                    )
                )
        else:
            until = anchors.get(entry["until"])
            if until is None:
                continue
            every = entry["every_days"]
            occasion = 1
            while (due := anchor + datetime.timedelta(days=every * occasion)) <= until:
                found.append(
                    TimePoint(
                        key=f"{prefix}{entry['anchor']}/{every}d#{occasion}",
                        label=f"{entry.get('label', 'Every ' + str(every) + ' days')} ({occasion})",
                        instruments=instruments,
                        due_on=due,
                        window_days=entry.get("window_days", 0),
                        offset_days=every * occasion,
                        recurring=True,
                    )
                )
                occasion += 1
    return sorted(found, key=lambda p: (p.due_on, p.key))
