"""A real Celery worker process, real Redis, real PostgreSQL: a weak bond entered through the
web form becomes a weak_bond flag within seconds. Nothing here is faked."""

import datetime
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from alliance.models import Flag
from clinic.celery import app
from clinic.models import WorkerHeartbeat
from outcomes.models import Response
from sessions import services as session_services
from sessions.models import SessionKind
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


def _wait_for(check, *, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"Timed out after {seconds:.0f}s waiting for {what}.")


@pytest.fixture
def worker():
    queue = f"test-{uuid.uuid4().hex[:8]}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "clinic.settings.test",
        "DATABASE_URL": _test_database_url(),
        "CELERY_QUEUE": queue,
    }
    log_path = Path(os.environ.get("RAPPORT_TEST_TMP", "/tmp")) / f"{queue}.log"
    try:
        with open(log_path, "w+") as log:
            yield from _run_worker(queue, env, log)
    finally:
        app.conf.task_default_queue = previous


def _run_worker(queue, env, log):
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "clinic", "worker", "--pool", "solo",
         "--queues", queue, "--hostname", f"{queue}@test", "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        # The worker records a heartbeat in the database once it is ready.
        _wait_for(
            lambda: (
                WorkerHeartbeat.objects.filter(hostname=f"{queue}@test").exists()
                or process.poll() is not None
            ),
            seconds=60,
            what="the worker to start",
        )
        assert process.poll() is None, _read(log)
        yield process, log
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def _read(log) -> str:
    log.seek(0)
    return log.read()[-3000:]


def test_weak_wai_sr_through_the_web_form_raises_weak_bond_in_a_worker(client, people, worker):
    process, log = worker
    start = timezone.now().replace(microsecond=0) + datetime.timedelta(days=5)
    session_services.session_book(
        actor=people.admin,
        program=people.enrolment.program,
        enrolment=people.enrolment,
        kind=SessionKind.DOSING,
        start=start,
        end=start + datetime.timedelta(hours=6),
    )
    client.force_login(people.coach)
    data = {
        "administered_at": timezone.localtime().strftime("%Y-%m-%dT%H:%M"),
        "submission_key": str(uuid.uuid4()),
        **{f"item_{n}": v for n, v in wai_answers(bond=2).items()},
    }
    response = client.post(reverse("response_new", args=[people.patient.public_id, "wai-sr"]), data)
    assert response.status_code == 302
    assert Response.objects.count() == 1
    submitted = time.monotonic()
    flag = _wait_for(
        lambda: Flag.objects.filter(patient=people.patient, kind="weak_bond").first(),
        seconds=20,
        what="the weak_bond flag (worker log below)\n" + _read(log),
    )
    print(f"\nweak_bond flag appeared {time.monotonic() - submitted:.2f}s after submit")
    assert flag.status == "open" and flag.evidence["bond"] == 2.0
    # The worker also sent the notification e-mail, once.
    _wait_for(
        lambda: Flag.objects.filter(pk=flag.pk, notified_at__isnull=False).exists(),
        seconds=20,
        what="the notification",
    )


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
