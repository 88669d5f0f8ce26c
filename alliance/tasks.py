"""Thin Celery tasks: ids in, one service call, retries on database trouble."""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import selectors, services

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


@shared_task(name="alliance.recompute_for_rule", **_RETRY)
def recompute_for_rule(rule_id: int) -> int:
    """After a threshold change: the patients that rule applies to, in one message."""
    _totals, failed = services.recompute_for_rule(rule_id=rule_id)
    return len(failed)


@shared_task(name="alliance.notify_flags", **_RETRY)
def notify_flags(flag_ids: list[int]) -> int:
    return sum(services.notify_flag(flag_id=flag_id) for flag_id in flag_ids)


def _sweep(patient_ids) -> int:
    _totals, failed = services.recompute_patients(patient_ids=patient_ids)
    for flag_id in selectors.unnotified_flag_ids():
        services.notify_flag(flag_id=flag_id)
    return len(failed)


@shared_task(name="alliance.sweep_upcoming_dosing", acks_late=True)
def sweep_upcoming_dosing() -> int:
    """Every 15 minutes: patients with a dosing session in the next 7 days."""
    return _sweep(selectors.patients_with_dosing_within(days=7))


@shared_task(name="alliance.sweep_all", acks_late=True)
def sweep_all() -> int:
    """Nightly: every patient in care and anyone with a flag still open, so a lost message
    is a late flag, never a missing one."""
    return _sweep(selectors.patients_to_sweep_ids())
