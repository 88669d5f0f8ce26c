"""Ask a worker to recompute patients' flags now. Only ever called after commit, and only as
a shortcut: the outbox (`StalePatient`) already holds the request, so a publish that fails
costs at most a minute, until the drain."""

import logging

log = logging.getLogger(__name__)


def enqueue_recompute(*, patient_ids) -> None:
    from clinic.celery import app

    for patient_id in sorted(set(patient_ids)):
        try:
            # No publish retries and short socket timeouts (settings): a request must never
            # wait on a broker outage.
            app.send_task("alliance.recompute_patient", args=[patient_id], retry=False)
        except Exception:
            log.warning("Broker unavailable; patient id %s waits for the drain.", patient_id)
            return  # the broker is down for the rest of them too
