"""Real Celery worker processes, real Redis, real PostgreSQL: nothing here is faked.

A weak bond entered through the web form becomes a weak_bond flag within seconds; a worker
killed in the middle of a task has its message redelivered, with the same result.
"""

import os
import signal
import time
import uuid

import psycopg
import pytest
from django.urls import reverse
from django.utils import timezone

from alliance.models import Flag
from alliance.queue import enqueue_recompute
from alliance.services import recompute_patient
from clinic.celery import app
from outcomes import services as outcome_services
from outcomes.models import Response
from tests.alliance.conftest import wai_answers
from tests.workers import _read, _test_database_url, _wait_for, waiting_on_a_lock

# Committed transactions, so the worker process sees the rows; serialized rollback restores
# the data migrations' rows (roles, instruments, protocols) that the flush removes. The
# `queue` and `start_worker` fixtures come from tests/workers.py (via conftest.py).
pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def _form_data(bond=2):
    return {
        "administered_at": timezone.localtime().strftime("%Y-%m-%dT%H:%M"),
        "submission_key": str(uuid.uuid4()),
        **{f"item_{n}": v for n, v in wai_answers(bond=bond).items()},
    }


def test_weak_wai_sr_through_the_web_form_raises_weak_bond_in_a_worker(
    client, people, start_worker, dosing_in
):
    _, log = start_worker("worker")
    dosing_in(5)
    client.force_login(people.coach)
    response = client.post(
        reverse("response_new", args=[people.patient.public_id, "wai-sr"]), _form_data()
    )
    assert response.status_code == 302
    assert Response.objects.count() == 1
    submitted = time.monotonic()
    flag = _wait_for(
        lambda: Flag.objects.filter(patient=people.patient, kind="weak_bond").first(),
        seconds=20,
        what=lambda: "the weak_bond flag; worker log:\n" + _read(log),
    )
    print(f"\nweak_bond flag appeared {time.monotonic() - submitted:.2f}s after submit")
    assert flag.status == "open" and flag.evidence["bond"] == 2.0
    # The worker also sent the notification e-mail, once.
    _wait_for(
        lambda: Flag.objects.filter(pk=flag.pk, notified_at__isnull=False).exists(),
        seconds=20,
        what="the notification",
    )


def _queue_length(queue: str) -> int:
    with app.connection_for_write() as conn:
        return conn.default_channel.client.llen(queue)


def _purge(queue: str) -> None:
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)


def test_a_worker_killed_mid_task_has_its_message_redelivered(
    people, start_worker, queue, dosing_in
):
    dosing_in(5)
    outcome_services.response_record(
        actor=people.coach,
        patient=people.patient,
        version=outcome_services.latest_version("wai-sr"),
        answers=wai_answers(bond=2),
        administered_at=timezone.now(),
    )
    _purge(queue)  # exactly one message below, so only redelivery can explain a flag
    fast_redelivery = {
        "CELERY_VISIBILITY_TIMEOUT": "3",
        "CELERY_RESTORE_INTERVAL": "1",
        "CELERY_RESTORE_THROTTLE": "1",
    }
    first, log = start_worker("first", **fast_redelivery)
    url = _test_database_url().replace("postgres://", "postgresql://", 1)
    # Hold the patient's row so the worker's recompute is provably in progress when killed.
    with psycopg.connect(url) as lock:
        # NO KEY: blocks the recompute's FOR UPDATE, not other rows' foreign-key checks.
        lock.execute(
            "SELECT id FROM clinic_patient WHERE id = %s FOR NO KEY UPDATE", [people.patient.pk]
        )
        enqueue_recompute(patient_ids=[people.patient.pk])
        _wait_for(
            waiting_on_a_lock,
            seconds=20,
            what=lambda: "the worker to start the task; log:\n" + _read(log),
        )
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        lock.rollback()
    assert _queue_length(queue) == 0  # taken, unacknowledged, not waiting in the queue
    assert not Flag.objects.exists()
    _, second_log = start_worker("second", **fast_redelivery)
    restarted = time.monotonic()
    flag = _wait_for(
        lambda: Flag.objects.filter(patient=people.patient, kind="weak_bond").first(),
        seconds=60,
        what=lambda: "the redelivered task; log:\n" + _read(second_log),
    )
    print(f"\nredelivered and flagged {time.monotonic() - restarted:.1f}s after the restart")
    assert flag.evidence["bond"] == 2.0
    before = list(Flag.objects.order_by("pk").values("kind", "dosing_session", "evidence"))
    recompute_patient(patient_id=people.patient.pk)  # the same result as a clean run
    assert list(Flag.objects.order_by("pk").values("kind", "dosing_session", "evidence")) == before


def test_with_the_broker_down_the_response_is_saved_and_the_page_is_calm(client, people):
    previous = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    app.pool.force_close_all()
    try:
        client.force_login(people.coach)
        data = {
            "administered_at": timezone.localtime().strftime("%Y-%m-%dT%H:%M"),
            "submission_key": str(uuid.uuid4()),
            **{f"item_{n}": v for n, v in wai_answers(bond=2).items()},
        }
        began = time.monotonic()
        response = client.post(
            reverse("response_new", args=[people.patient.public_id, "wai-sr"]), data, follow=True
        )
        elapsed = time.monotonic() - began
    finally:
        app.conf.broker_url = previous
        app.pool.force_close_all()
    assert response.status_code == 200
    assert "WAI-SR saved." in response.content.decode()
    assert Response.objects.count() == 1
    assert elapsed < 15, f"the coach waited {elapsed:.1f}s"
    # The sweep later computes what the lost message would have.
    from alliance.tasks import sweep_all

    sweep_all()
    assert not Flag.objects.filter(kind="weak_bond").exists()  # no dosing booked here
    assert Flag.objects.filter(kind="low_alliance").exists()
