"""Rooms and protocol templates, changed by admins on the app's own pages.

Neither is ever deleted (sessions and programs point at them): a room or a protocol is taken
out of use instead. Every change is audited with the values before and after.
"""

import datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, models, transaction

from clinic import access
from clinic.audit import audit_record
from clinic.models import AuditEvent

from .. import schedules
from ..models import Protocol, ProtocolStep, Room

PROTOCOL_FIELDS = (
    "name",
    "description",
    "modality",
    "min_preparation_before_dosing",
    "is_active",
    "measurement_schedule",
)
STEP_FIELDS = (
    "order",
    "kind",
    "label",
    "anchor",
    "day_offset",
    "start_time",
    "duration_minutes",
    "is_group",
    "instruments_due",
)


def _require_admin(actor) -> None:
    if not access.can_manage_programs(actor):
        raise PermissionDenied("Only admins manage rooms and protocols.")


def _plain(value):
    """A value as the audit row's JSON keeps it."""
    if isinstance(value, datetime.time):
        return value.isoformat(timespec="minutes")
    return value


def _save_audited(*, actor, row: models.Model, values: dict, duplicate: dict) -> models.Model:
    """Write `values` onto `row` (new or locked), validate, save and audit what changed.

    `duplicate` is the form error to show when the database refuses a second row with the same
    unique name or order: two admins saving at once, or a double submit, make one row.
    """
    created = row.pk is None
    before = {name: _plain(getattr(row, name)) for name in values}
    for name, value in values.items():
        setattr(row, name, value)
    after = {name: _plain(value) for name, value in values.items()}
    changed = [name for name in values if created or before[name] != after[name]]
    if not changed:
        return row
    row.full_clean()
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError as exc:
        raise ValidationError(duplicate) from exc
    audit_record(
        actor=actor,
        action=AuditEvent.Action.CREATE if created else AuditEvent.Action.UPDATE,
        target=row,
        detail={
            "before": None if created else {name: before[name] for name in changed},
            "after": {name: after[name] for name in changed},
        },
    )
    return row


@transaction.atomic
def room_save(*, actor, room: Room | None = None, name: str, is_active: bool = True) -> Room:
    """Create a room, or rename it or take it out of use. A room out of use is no longer
    offered when booking; sessions already booked in it keep it."""
    _require_admin(actor)
    name = " ".join((name or "").split())
    row = Room() if room is None else Room.objects.select_for_update().get(pk=room.pk)
    others = Room.objects.filter(name__iexact=name).exclude(pk=row.pk)
    taken = {"name": "Another room already has this name."}
    if others.exists():
        raise ValidationError(taken)
    return _save_audited(
        actor=actor, row=row, values={"name": name, "is_active": is_active}, duplicate=taken
    )


@transaction.atomic
def protocol_save(*, actor, protocol: Protocol | None = None, **values) -> Protocol:
    """Create a protocol or change its name, description, modality, the preparations expected
    before a dosing, or whether programs may still choose it."""
    _require_admin(actor)
    unknown = set(values) - set(PROTOCOL_FIELDS)
    if unknown:
        raise ValueError(f"Not a protocol field: {', '.join(sorted(unknown))}")
    if protocol is None:
        row = Protocol()
    else:
        row = Protocol.objects.select_for_update().get(pk=protocol.pk)
    values["name"] = " ".join((values.get("name", row.name) or "").split())
    if "measurement_schedule" in values:
        values["measurement_schedule"] = values["measurement_schedule"] or []
        if problems := schedules.schedule_errors(values["measurement_schedule"]):
            raise ValidationError({"measurement_schedule": problems})
    taken = {"name": "Another protocol already has this name."}
    if Protocol.objects.filter(name__iexact=values["name"]).exclude(pk=row.pk).exists():
        raise ValidationError(taken)
    return _save_audited(actor=actor, row=row, values=values, duplicate=taken)


@transaction.atomic
def protocol_step_save(
    *, actor, protocol: Protocol, step: ProtocolStep | None = None, **values
) -> ProtocolStep:
    """Add a step to a protocol or change one. Schedules already generated keep their dates
    (DESIGN §3: a protocol generates a schedule on enrolment and nothing rewrites it later);
    what is due after a step follows the step, so a change there reaches existing sessions."""
    _require_admin(actor)
    unknown = set(values) - set(STEP_FIELDS)
    if unknown:
        raise ValueError(f"Not a protocol step field: {', '.join(sorted(unknown))}")
    protocol = Protocol.objects.select_for_update().get(pk=protocol.pk)
    if step is None:
        row = ProtocolStep(protocol=protocol)
    else:
        row = ProtocolStep.objects.select_for_update().get(pk=step.pk, protocol=protocol)
    order = values.get("order", row.order)
    taken = {"order": f"Step {order} already exists in this protocol: choose another number."}
    if protocol.steps.filter(order=order).exclude(pk=row.pk).exists():
        raise ValidationError(taken)
    codes = values.get("instruments_due", row.instruments_due) or []
    values["instruments_due"] = list(dict.fromkeys(code.strip() for code in codes if code))
    return _save_audited(actor=actor, row=row, values=values, duplicate=taken)
