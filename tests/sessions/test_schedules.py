"""Measurement schedules as protocol data: the shipped follow-up plan, dates from anchors,
and schedules that cannot work refused with a message."""

import datetime
import json

import pytest

from sessions import schedules, services
from sessions.admin import ProtocolForm
from tests.factories import protocol_named

FOLLOW_UP = ["phq-9", "qids-sr-16", "gad-7", "grid-hamd-17"]


def _offsets(*points, anchor="last_dosing"):
    return {
        "kind": "offsets",
        "anchor": anchor,
        "instruments": FOLLOW_UP,
        "time_points": [{"label": label, "days": d, "window_days": w} for label, d, w in points],
    }


@pytest.mark.django_db
def test_the_two_dose_protocol_ships_the_studys_follow_up_plan():
    schedule = protocol_named("Psilocybin for depression, two doses").measurement_schedule
    (plan,) = [entry for entry in schedule if entry["kind"] == "offsets"]
    assert plan["anchor"] == "last_dosing" and plan["instruments"] == FOLLOW_UP
    assert [(p["label"], p["days"]) for p in plan["time_points"]] == [
        ("4 weeks", 28),
        ("3 months", 91),
        ("6 months", 182),
        ("12 months", 365),
    ]
    for name in ("Ketamine-assisted therapy series", "Group psilocybin program"):
        assert protocol_named(name).measurement_schedule, name


def test_time_points_fall_at_offsets_from_their_anchor_and_wait_for_it():
    schedule = [_offsets(("4 weeks", 28, 7), ("3 months", 91, 14))]
    dosing = datetime.date(2027, 2, 5)
    points = schedules.time_points(schedule, anchors={"last_dosing": dosing}, prefix="e1/")
    assert [(p.label, p.due_on, p.opens_on, p.closes_on) for p in points] == [
        (
            "4 weeks",
            datetime.date(2027, 3, 5),
            datetime.date(2027, 2, 26),
            datetime.date(2027, 3, 12),
        ),
        (
            "3 months",
            datetime.date(2027, 5, 7),
            datetime.date(2027, 4, 23),
            datetime.date(2027, 5, 21),
        ),
    ]
    assert points[0].key == "e1/last_dosing+28"
    # No dosing booked yet: nothing hangs on it.
    assert schedules.time_points(schedule, anchors={"last_dosing": None}) == []


def test_a_recurring_measure_repeats_until_its_end_anchor():
    schedule = [
        {
            "kind": "recurring",
            "label": "PHQ-9",
            "anchor": "enrolment",
            "until": "last_dosing",
            "every_days": 14,
            "window_days": 3,
            "instruments": ["phq-9"],
        }
    ]
    start = datetime.date(2027, 1, 4)
    points = schedules.time_points(
        schedule, anchors={"enrolment": start, "last_dosing": start + datetime.timedelta(days=32)}
    )
    assert [p.due_on for p in points] == [datetime.date(2027, 1, 18), datetime.date(2027, 2, 1)]
    assert all(p.recurring for p in points)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ([_offsets(("4 weeks", 28, 7), ("5 weeks", 35, 7))], "overlap"),
        ([_offsets(("4 weeks", 28, -1))], "cannot be negative"),
        (
            [_offsets(("4 weeks", 28, 7)), _offsets(("about 4 weeks", 30, 0))],
            "overlap",
        ),
        (
            [
                {
                    "kind": "recurring",
                    "anchor": "enrolment",
                    "until": "last_dosing",
                    "every_days": 14,
                    "window_days": 7,
                    "instruments": ["phq-9"],
                }
            ],
            "overlaps the next occasion",
        ),
        ([_offsets(("4 weeks", 28, 7), anchor="discharge")], "anchor must be one of"),
    ],
)
def test_a_schedule_that_cannot_work_is_refused_with_a_message(schedule, message):
    problems = schedules.schedule_errors(schedule)
    assert any(message in problem for problem in problems), problems


@pytest.mark.django_db
def test_loading_a_protocol_file_with_a_bad_schedule_changes_nothing(tmp_path):
    data = json.loads(services.protocols.PROTOCOLS_DIR.joinpath("ketamine-series.json").read_text())
    data["measurement_schedule"] = [_offsets(("4 weeks", 28, 7), ("5 weeks", 35, 7))]
    data["name"] = "A clinic's own ketamine series"
    (tmp_path / "own.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="overlap"):
        services.load_protocols(directory=tmp_path)
    from sessions.models import Protocol

    assert not Protocol.objects.filter(name="A clinic's own ketamine series").exists()


@pytest.mark.django_db
def test_the_admin_refuses_a_negative_window_and_saves_nothing():
    protocol = protocol_named("Group psilocybin program")
    form = ProtocolForm(
        data={
            "name": protocol.name,
            "modality": protocol.modality,
            "min_preparation_before_dosing": 2,
            "is_active": True,
            "measurement_schedule": json.dumps([_offsets(("4 weeks", 28, -3))]),
        },
        instance=protocol,
    )
    assert not form.is_valid()
    assert "cannot be negative" in str(form.errors["measurement_schedule"])
    protocol.refresh_from_db()
    assert protocol.measurement_schedule[0]["time_points"][0]["window_days"] == 7
