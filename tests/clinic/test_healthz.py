import datetime

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from clinic.models import WorkerHeartbeat
from clinic.tasks import record_heartbeat

pytestmark = pytest.mark.django_db


def test_healthz_reports_database_broker_and_worker(client):
    response = client.get(reverse("healthz"))
    body = response.json()
    assert response.status_code == 200
    assert body["database"] == {"ok": True}
    # make test always runs with a real Redis (embedded or REDIS_URL).
    assert body["broker"] == {"ok": True}
    assert body["worker"] == {"ok": False, "last_seen": None}
    assert body["status"] == "degraded"


def test_a_recent_worker_heartbeat_makes_it_healthy(client):
    record_heartbeat("worker@test")
    body = client.get(reverse("healthz")).json()
    assert body["worker"]["ok"] is True
    assert body["status"] == "ok"


def test_a_stale_heartbeat_is_reported(client):
    WorkerHeartbeat.objects.create(
        hostname="worker@old", seen_at=timezone.now() - datetime.timedelta(minutes=10)
    )
    assert client.get(reverse("healthz")).json()["worker"]["ok"] is False


def test_broker_down_is_reported_but_still_serves(client, settings):
    from clinic.celery import app

    original = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    try:
        response = client.get(reverse("healthz"))
    finally:
        app.conf.broker_url = original
    assert response.status_code == 200
    assert response.json()["broker"]["ok"] is False


@pytest.fixture
def database_down():
    """Point the real connection at a port where no PostgreSQL listens, then restore it."""
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT="1", OPTIONS={"connect_timeout": 2})
    yield
    connection.close()
    connection.settings_dict.clear()
    connection.settings_dict.update(saved)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_database_down_answers_503(client, database_down):
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    body = response.json()
    assert body["database"]["ok"] is False
    assert body["status"] == "down"
