from django.db import models

from .models import AuditEvent, Patient


def audit_record(
    *,
    actor,
    action: str,
    target: models.Model,
    patient: Patient | None = None,
    detail: dict | None = None,
) -> AuditEvent:
    """Write one audit row. Call it inside the transaction of the change it records."""
    return AuditEvent.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        object_type=target._meta.label_lower,
        object_id=str(getattr(target, "public_id", target.pk)),
        patient=patient,
        detail=detail or {},
    )
