"""Ask a worker to recompute patients' flags now. Only ever called after commit, and only as
a shortcut: the outbox (`StalePatient`) already holds the request, so a publish that fails
costs at most a minute, until the drain.

A coach's save asks for its patient on the interactive queue, which only quick per-patient
work uses; many patients at once (an import, a threshold change) make ONE task on the bulk
queue (routing: `clinic.celery.route_task`)."""

import logging

log = logging.getLogger(__name__)


def enqueue_recompute(*, patient_ids, bulk: bool = False) -> None:
    from clinic.celery import app

    ids = sorted(set(patient_ids))
    # No publish retries and short socket timeouts (settings): a request must never wait on a
    # broker outage.
    try:
        if bulk:
            app.send_task("alliance.recompute_patients", args=[ids], retry=False)
            return
        for patient_id in ids:
            app.send_task("alliance.recompute_patient", args=[patient_id], retry=False)
    except Exception:
        # The broker is down for the rest of them too; the drain has them all.
        log.warning("Broker unavailable; %s patient(s) wait for the drain.", len(ids))
