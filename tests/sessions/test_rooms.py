"""Rooms and protocol templates changed by admins (sessions/services/rooms.py): validated,
audited with before and after, never two with one name, and refused for anyone else."""

import datetime

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from clinic.models import AuditEvent
from sessions import services
from sessions.models import Protocol, ProtocolStep, Room, SessionKind

pytestmark = pytest.mark.django_db

STEP = {
    "order": 1,
    "kind": SessionKind.PREPARATION,
    "label": "Preparation 1",
    "anchor": ProtocolStep.Anchor.START,
    "day_offset": 0,
    "start_time": datetime.time(10, 0),
    "duration_minutes": 60,
    "is_group": False,
    "instruments_due": ["wai-sr", "srs"],
}


def _protocol(actor, **overrides):
    values = {
        "name": "Ketamine, short course",
        "description": "",
        "modality": "ketamine",
        "min_preparation_before_dosing": 1,
        "is_active": True,
    }
    return services.protocol_save(actor=actor, **{**values, **overrides})


def test_a_room_is_created_renamed_and_taken_out_of_use_with_an_audit_row_each(people):
    room = services.room_save(actor=people.admin, name="  Garden   room ")
    assert room.name == "Garden room" and room.is_active
    services.room_save(actor=people.admin, room=room, name="Garden room", is_active=False)
    room.refresh_from_db()
    assert not room.is_active
    events = AuditEvent.objects.filter(object_type="clinic_sessions.room").order_by("at", "id")
    assert [(e.action, e.actor) for e in events] == [
        ("create", people.admin),
        ("update", people.admin),
    ]
    assert events[1].detail == {"before": {"is_active": True}, "after": {"is_active": False}}


def test_saving_a_room_unchanged_writes_no_audit_row(people):
    room = services.room_save(actor=people.admin, name="Quiet room")
    services.room_save(actor=people.admin, room=room, name="Quiet room", is_active=True)
    assert AuditEvent.objects.filter(object_type="clinic_sessions.room").count() == 1


def test_a_second_room_with_the_same_name_in_other_letters_is_refused(people):
    services.room_save(actor=people.admin, name="Garden room")
    with pytest.raises(ValidationError) as refused:
        services.room_save(actor=people.admin, name="GARDEN ROOM")
    assert "name" in refused.value.message_dict
    assert Room.objects.filter(name__iexact="garden room").count() == 1


@pytest.mark.parametrize("persona", ["coach", "clinician"])
def test_only_admins_change_rooms_and_protocols(people, persona):
    actor = getattr(people, persona)
    with pytest.raises(PermissionDenied):
        services.room_save(actor=actor, name="Side room")
    with pytest.raises(PermissionDenied):
        _protocol(actor)
    protocol = _protocol(people.admin)
    with pytest.raises(PermissionDenied):
        services.protocol_step_save(actor=actor, protocol=protocol, **STEP)
    assert not Room.objects.filter(name="Side room").exists()
    assert not protocol.steps.exists()


def test_a_protocol_and_its_steps_are_audited_with_what_changed(people):
    protocol = _protocol(people.admin)
    step = services.protocol_step_save(actor=people.admin, protocol=protocol, **STEP)
    services.protocol_step_save(
        actor=people.admin,
        protocol=protocol,
        step=step,
        **{**STEP, "day_offset": 7, "instruments_due": ["wai-sr", "srs", "wai-sr"]},
    )
    step.refresh_from_db()
    assert step.day_offset == 7 and step.instruments_due == ["wai-sr", "srs"]
    change = AuditEvent.objects.get(object_type="clinic_sessions.protocolstep", action="update")
    assert change.actor == people.admin
    assert change.detail == {"before": {"day_offset": 0}, "after": {"day_offset": 7}}
    created = AuditEvent.objects.get(object_type="clinic_sessions.protocol", action="create")
    assert created.detail["after"]["name"] == "Ketamine, short course"


def test_a_step_number_used_twice_in_one_protocol_is_refused_and_writes_nothing(people):
    protocol = _protocol(people.admin)
    services.protocol_step_save(actor=people.admin, protocol=protocol, **STEP)
    before = AuditEvent.objects.count()
    with pytest.raises(ValidationError) as refused:
        services.protocol_step_save(
            actor=people.admin, protocol=protocol, **{**STEP, "label": "Again"}
        )
    assert "order" in refused.value.message_dict
    assert protocol.steps.count() == 1 and AuditEvent.objects.count() == before
    # The same number in another protocol is fine.
    other = _protocol(people.admin, name="Another")
    services.protocol_step_save(actor=people.admin, protocol=other, **STEP)


def test_a_second_protocol_with_the_same_name_is_refused(people):
    _protocol(people.admin)
    with pytest.raises(ValidationError) as refused:
        _protocol(people.admin, name="ketamine, SHORT course")
    assert "name" in refused.value.message_dict
    assert Protocol.objects.filter(name__iexact="ketamine, short course").count() == 1


def test_an_impossible_step_is_refused_by_the_models_rules(people):
    protocol = _protocol(people.admin)
    with pytest.raises(ValidationError) as refused:
        services.protocol_step_save(
            actor=people.admin, protocol=protocol, **{**STEP, "kind": "party"}
        )
    assert "kind" in refused.value.message_dict
    assert not protocol.steps.exists()
