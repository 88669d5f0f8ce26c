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
from kombu import pools

from alliance.models import Flag, StalePatient
from alliance.queue import enqueue_recompute
from alliance.services import recompute_patient
from alliance.tasks import drain_stale, sweep_all
from clinic.celery import app, interactive_queue
from outcomes import services as outcome_services
from outcomes.models import Response
from sessions.models import SessionKind
from tests.alliance.conftest import wai_answers
from tests.factories import CoachAssignmentFactory, EnrolmentFactory
from tests.helpers import book_session
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


def test_a_coachs_flag_does_not_wait_for_a_sweep_that_holds_the_bulk_worker(
    client, people, start_worker, queue
):
    """As deployed: one worker per queue. The nightly sweep is stuck (a row it must lock is
    held) and a coach's weak rating still becomes a flag within seconds."""
    blocker = EnrolmentFactory(enrolled_by=people.admin).patient
    # Created after the blocker, so the sweep, which locks in id order, waits before this one.
    enrolment = EnrolmentFactory(enrolled_by=people.admin)
    CoachAssignmentFactory(enrolment=enrolment, coach=people.coach, assigned_by=people.admin)
    book_session(
        enrolment, actor=people.admin, kind=SessionKind.DOSING, hours_from_now=120, minutes=360
    )
    _, bulk_log = start_worker("bulk", queues=queue)
    _, interactive_log = start_worker("interactive", queues=interactive_queue(queue))
    url = _test_database_url().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(url) as lock:
        lock.execute("SELECT id FROM clinic_patient WHERE id = %s FOR NO KEY UPDATE", [blocker.pk])
        sweep_all.apply_async()
        _wait_for(
            waiting_on_a_lock,
            seconds=30,
            what=lambda: "the sweep to start; bulk worker log:\n" + _read(bulk_log),
        )
        client.force_login(people.coach)
        response = client.post(
            reverse("response_new", args=[enrolment.patient.public_id, "wai-sr"]), _form_data()
        )
        assert response.status_code == 302
        submitted = time.monotonic()
        _wait_for(
            lambda: Flag.objects.filter(patient=enrolment.patient, kind="weak_bond").exists(),
            seconds=20,
            what=lambda: "the coach's flag; interactive worker log:\n" + _read(interactive_log),
        )
        print(f"\nflag {time.monotonic() - submitted:.2f}s after submit, sweep still waiting")
        assert waiting_on_a_lock()  # the sweep had not got past the held row
        lock.rollback()
    _wait_for(
        lambda: "alliance.sweep_all" in _read(bulk_log) and "succeeded" in _read(bulk_log),
        seconds=30,
        what="the sweep to finish",
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
    interactive = interactive_queue(queue)
    _purge(queue)  # exactly one message below, so only redelivery can explain a flag
    _purge(interactive)
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
    assert _queue_length(interactive) == 0  # taken, unacknowledged, not waiting in the queue
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


def _post(client, people, code, answers):
    began = time.monotonic()
    response = client.post(
        reverse("response_new", args=[people.patient.public_id, code]),
        {
            "administered_at": timezone.localtime().strftime("%Y-%m-%dT%H:%M"),
            "submission_key": str(uuid.uuid4()),
            **{f"item_{n}": v for n, v in answers.items()},
        },
        follow=True,
    )
    return response, time.monotonic() - began


def _use_broker(url: str) -> None:
    """Point this process's publisher at another broker (fresh connection pools)."""
    app.conf.broker_url = url
    pools.reset()  # kombu keeps connection and producer pools per broker, process-wide
    app._pool = None
    app.amqp._producer_pool = None


def test_with_the_broker_down_nothing_waits_and_nothing_is_lost(client, people, start_worker):
    previous = app.conf.broker_url
    _use_broker("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        client.force_login(people.coach)
        wai, wai_seconds = _post(client, people, "wai-sr", wai_answers(bond=2))
        phq, phq_seconds = _post(
            client, people, "phq-9", {n: (2 if n == 9 else 1) for n in range(1, 10)}
        )
    finally:
        _use_broker(previous)
    print(f"\nsaves with the broker down: WAI-SR {wai_seconds:.2f}s, PHQ-9 {phq_seconds:.2f}s")
    assert wai.status_code == phq.status_code == 200
    assert "WAI-SR saved." in wai.content.decode()
    assert wai_seconds < 2 and phq_seconds < 2
    assert Response.objects.count() == 2
    # The safety answer's flag was raised with the answers, not by a worker.
    assert Flag.objects.get(kind="safety").severity == "urgent"
    assert StalePatient.objects.filter(patient=people.patient).exists()
    assert not Flag.objects.filter(kind="low_alliance").exists()

    # The broker is back: the drain (beat, every minute) recomputes the stale patient.
    _, log = start_worker("worker")
    drain_stale.apply_async()
    _wait_for(
        lambda: Flag.objects.filter(kind="low_alliance").exists(),
        seconds=30,
        what=lambda: "the drain; worker log:\n" + _read(log),
    )
    _wait_for(lambda: not StalePatient.objects.exists(), seconds=10, what="the outbox to empty")
