import json

from django.db import models

from .models import AuditEvent, Patient


def _who(actor):
    """The acting user, or None for the system (a worker) and anonymous visitors."""
    return actor if actor is not None and actor.is_authenticated else None


def _what(target: models.Model | None, object_type: str, object_id: str) -> tuple[str, str]:
    """(object type, object id): a row names itself by its public id where it has one."""
    if target is None:
        return object_type, object_id
    return target._meta.label_lower, str(getattr(target, "public_id", target.pk))


def _event(
    *,
    actor,
    action: str,
    target: models.Model | None = None,
    patient: Patient | None = None,
    detail: dict | None = None,
    object_type: str = "",
    object_id: str = "",
) -> AuditEvent:
    object_type, object_id = _what(target, object_type, object_id)
    return AuditEvent(
        actor=_who(actor),
        action=action,
        object_type=object_type,
        object_id=object_id,
        patient=patient,
        detail=detail or {},
    )


def audit_record(
    *,
    actor,
    action: str,
    target: models.Model | None = None,
    patient: Patient | None = None,
    detail: dict | None = None,
    object_type: str = "",
    object_id: str = "",
) -> AuditEvent:
    """Write one audit row. Call it inside the transaction of the change it records.

    `actor` None is the system (a worker's automatic change). Something that is not a row
    (an export) names itself with `object_type` and `object_id` instead of `target`.
    """
    event = _event(
        actor=actor,
        action=action,
        target=target,
        patient=patient,
        detail=detail,
        object_type=object_type,
        object_id=object_id,
    )
    event.save()
    return event


def audit_records(entries: list[dict]) -> list[AuditEvent]:
    """Write many audit rows in one statement (a sweep's automatic changes); each entry takes
    `audit_record`'s keyword arguments. Call it inside the transaction of the changes."""
    return AuditEvent.objects.bulk_create([_event(**entry) for entry in entries], batch_size=1000)


# The columns `audit_values` gives, in its order, for `clinic.bulk.copy_values`.
AUDIT_FIELDS = ["at", "actor_id", "action", "object_type", "object_id", "patient_id", "detail"]


def audit_values(
    *,
    at,
    actor,
    action: str,
    target: models.Model | None = None,
    patient: Patient | None = None,
    detail: dict | None = None,
    object_type: str = "",
    object_id: str = "",
) -> tuple:
    """The row `audit_record` writes, as database values in `AUDIT_FIELDS` order: for bulk
    writers that copy many rows at once (the demo's bulk seeding), in the same transaction.
    Same rules as `_event`; no model instance, which costs more than the copy itself."""
    who = _who(actor)
    return (
        at,
        who.pk if who is not None else None,
        str(action),
        *_what(target, object_type, object_id),
        patient.pk if patient is not None else None,
        json.dumps(detail or {}),
    )
