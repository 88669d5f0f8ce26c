"""Real Celery worker processes, real Redis, real PostgreSQL: nothing here is faked.

A weak bond entered through the web form becomes a weak_bond flag within seconds; a worker
killed in the middle of a task has its message redelivered, with the same result.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from alliance.models import Flag
from alliance.queue import enqueue_recompute
from alliance.services import recompute_patient
from clinic.celery import app
from clinic.models import WorkerHeartbeat
from outcomes import services as outcome_services
from outcomes.models import Response
from tests.alliance.conftest import wai_answers

ROOT = Path(__file__).resolve().parents[2]
# Committed transactions, so the worker process sees the rows; serialized rollback restores
# the data migrations' rows (roles, instruments, protocols) that the flush removes.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def _test_database_url() -> str:
    """The same server as DATABASE_URL, but the test database pytest-django created."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


def _wait_for(check, *, seconds: float, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"Timed out after {seconds:.0f}s waiting for {what() if callable(what) else what}")


def _read(log) -> str:
    log.seek(0)
    return log.read()[-3000:]


@pytest.fixture
def queue():
    name = f"test-{uuid.uuid4().hex[:8]}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = name
    yield name
    app.conf.task_default_queue = previous


@pytest.fixture
def start_worker(queue, tmp_path):
    """Start worker processes on this test's own queue; all are stopped at the end."""
    started = []

    def _start(name: str, **env_extra):
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "clinic.settings.test",
            "DATABASE_URL": _test_database_url(),
            "CELERY_QUEUE": queue,
            **env_extra,
        }
        log = (tmp_path / f"{name}.log").open("w+")
        hostname = f"{name}-{queue}@test"
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "clinic", "worker", "--pool", "solo",
             "--queues", queue, "--hostname", hostname, "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        started.append((process, log))
        # The worker records a heartbeat in the database once it is ready.
        _wait_for(
            lambda: (
                WorkerHeartbeat.objects.filter(hostname=hostname).exists()
                or process.poll() is not None
            ),
            seconds=60,
            what="the worker to start",
        )
        assert process.poll() is None, _read(log)
        return process, log

    yield _start
    for process, log in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


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


def _waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


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
            _waiting_on_a_lock,
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
