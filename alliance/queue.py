"""Ask a worker to recompute patients' flags. Called with transaction.on_commit by the apps
whose changes matter (responses, dosing sessions)."""

import logging

log = logging.getLogger(__name__)


def enqueue_recompute(*, patient_ids) -> None:
    from clinic.celery import app

    for patient_id in sorted(set(patient_ids)):
        try:
            # No publish retries: a coach's request must not hang on a broker outage. The
            # sweep (every 15 minutes near dosing, nightly for all) recomputes what was missed.
            app.send_task("alliance.recompute_patient", args=[patient_id], retry=False)
        except Exception:
            log.warning(
                "Broker unavailable; flags for patient id %s wait for the sweep.", patient_id
            )
