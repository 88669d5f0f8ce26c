"""Thin Celery tasks: ids in, one service call, retries on database trouble."""

import logging
import time

from celery import shared_task
from django.db import InterfaceError, OperationalError

from clinic.locks import advisory_lock

from . import exports, fhir_exports, flag_inputs, services, trajectories

log = logging.getLogger(__name__)

# Sweeps may outlast the broker's visibility timeout; a redelivered copy finds the lock taken
# and stops, so a long task never runs twice at once.
_LONG = {"acks_late": True, "soft_time_limit": 1500, "time_limit": 1800}


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


# A sweep stops taking new chunks after this long, well before the soft time limit: the
# chunk in hand (about a second) and the notifications still fit, and what is left waits
# in the outbox for the drain.
SWEEP_BUDGET_SECONDS = 1200


def _recompute_and_notify(patient_ids) -> int:
    result = services.recompute_patients(
        patient_ids=patient_ids, deadline=time.monotonic() + SWEEP_BUDGET_SECONDS
    )
    if result.left:
        log.warning(
            "Recompute stopped at its time budget; %s patient(s) wait in the outbox.",
            len(result.left),
        )
    for flag_id in flag_inputs.unnotified_flag_ids():
        services.notify_flag(flag_id=flag_id)
    return len(result.failed)


def _sweep(name: str, patient_ids) -> int | None:
    with advisory_lock(name) as mine:
        if not mine:
            return None
        return _recompute_and_notify(patient_ids())


@shared_task(name="alliance.recompute_patients", **_LONG)
def recompute_patients(patient_ids: list[int]) -> int:
    """Many patients at once (an import, a threshold change over a program), on the bulk
    queue: one task for all of them, so a coach's save never queues behind thousands."""
    return _recompute_and_notify(patient_ids)


@shared_task(name="alliance.drain_stale", **_LONG)
def drain_stale() -> int | None:
    """Every minute: patients whose flags a committed change made stale (the outbox)."""
    return _sweep("alliance.drain_stale", flag_inputs.stale_patient_ids)


@shared_task(name="alliance.sweep_upcoming_dosing", **_LONG)
def sweep_upcoming_dosing() -> int | None:
    """Every 15 minutes: patients with a dosing session in the next 7 days."""
    return _sweep(
        "alliance.sweep_upcoming_dosing", lambda: flag_inputs.patients_with_dosing_within(days=7)
    )


@shared_task(name="alliance.sweep_all", **_LONG)
def sweep_all() -> int | None:
    """Nightly: every patient in care and anyone with a flag still open, so a lost message
    is a late flag, never a missing one."""
    return _sweep("alliance.sweep_all", flag_inputs.patients_to_sweep_ids)


@shared_task(name="alliance.recompute_expected_bands", **_LONG)
def recompute_expected_bands() -> dict | None:
    """Nightly, before the sweep: the expected-trajectory band table. One transaction, so a
    failure leaves yesterday's bands; a lock, so two copies never race."""
    with advisory_lock("alliance.recompute_expected_bands") as mine:
        if not mine:
            return None
        return trajectories.recompute_expected_bands()


@shared_task(
    bind=True,
    name="alliance.build_fhir_export",
    acks_late=True,
    soft_time_limit=1500,
    time_limit=1800,
    max_retries=fhir_exports.MAX_ATTEMPTS - 1,
)
def build_fhir_export(self, export_id: int) -> str:
    """Build one requested FHIR export; retried with a growing pause, then reported as failed
    on the exports page."""
    try:
        export = fhir_exports.fhir_export_build(export_id=export_id)
    except Exception as exc:
        if self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=30 * 2**self.request.retries) from exc
        log.exception(
            "FHIR export %s failed after %s attempts.", export_id, fhir_exports.MAX_ATTEMPTS
        )
        fhir_exports.fhir_export_failed(
            export_id=export_id,
            error=f"It failed {fhir_exports.MAX_ATTEMPTS} times ({type(exc).__name__}).",
        )
        return "failed"
    return export.status if export else "skipped"


@shared_task(name="alliance.purge_expired_fhir_exports", **_RETRY)
def purge_expired_fhir_exports() -> int:
    """Every 15 minutes: delete the files of FHIR exports past their time, so identified data
    does not wait on disk for somebody's next export request."""
    return fhir_exports.fhir_exports_purge_expired()


@shared_task(name="alliance.count_adverse_events", **_RETRY)
def count_adverse_events() -> int:
    """Every five minutes: each program's adverse events per dosing, for its page."""
    return services.adverse_event_tallies_refresh()


@shared_task(name="alliance.refresh_wide_lines", **_RETRY)
def refresh_wide_lines() -> int:
    """Every minute: the stored wide-export lines of patients whose answers changed."""
    return exports.wide_lines_refresh()
