"""Thin Celery tasks: ids in, one service call, retries on database trouble."""

import logging

from celery import shared_task
from django.db import DatabaseError, InterfaceError, OperationalError

from . import selectors, services

log = logging.getLogger(__name__)

_RETRY = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 10,
    "acks_late": True,
}


@shared_task(name="alliance.recompute_patient", **_RETRY)
def recompute_patient(patient_id: int) -> dict:
    result = services.recompute_patient(patient_id=patient_id)
    return {key: [f.pk for f in flags] for key, flags in result.items()}


@shared_task(name="alliance.notify_flags", **_RETRY)
def notify_flags(flag_ids: list[int]) -> int:
    return sum(services.notify_flag(flag_id=flag_id) for flag_id in flag_ids)


def _sweep(patient_ids) -> int:
    failed = 0
    for patient_id in patient_ids:
        try:
            services.recompute_patient(patient_id=patient_id)
        except DatabaseError:
            failed += 1
            log.exception("Recompute failed for patient id %s; the next sweep retries.", patient_id)
    for flag_id in selectors.unnotified_flag_ids():
        services.notify_flag(flag_id=flag_id)
    return failed


@shared_task(name="alliance.sweep_upcoming_dosing", acks_late=True)
def sweep_upcoming_dosing() -> int:
    """Every 15 minutes: patients with a dosing session in the next 7 days."""
    return _sweep(selectors.patients_with_dosing_within(days=7))


@shared_task(name="alliance.sweep_all", acks_late=True)
def sweep_all() -> int:
    """Nightly: every patient in care, so a lost message is a late flag, never a missing one."""
    return _sweep(selectors.patients_in_care_ids())
