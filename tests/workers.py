"""Real Celery worker processes for tests: each test gets its own queue on the real Redis,
and workers that read the test database pytest-django created.

Import the fixtures into a test module (or a conftest) to use them:
`from tests.workers import queue, start_worker  # noqa: F401`.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection

from clinic.celery import app, interactive_queue
from clinic.models import WorkerHeartbeat

ROOT = Path(__file__).resolve().parents[1]


def waiting_on_a_lock() -> bool:
    """Whether some connection to the test database is blocked on a row lock: proof that a
    second transaction (or a worker) reached the point where it must wait."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


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
    """Start worker processes on this test's own pair of queues (bulk and interactive; both,
    unless `queues` names one); all are stopped at the end."""
    started = []

    def _start(name: str, queues: str | None = None, **env_extra):
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
             "--queues", queues or f"{queue},{interactive_queue(queue)}", "--hostname", hostname,
             "--loglevel", "INFO"],
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
