"""State of the parts the app depends on, for /healthz and the operators who poll it."""

import datetime

from django.db import DatabaseError, connection
from django.utils import timezone

from .models import WorkerHeartbeat

# The beat schedule runs the heartbeat every minute; three missed beats means trouble.
WORKER_FRESH_FOR = datetime.timedelta(minutes=3)


def database_state() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return {"ok": False, "error": exc.__class__.__name__}
    return {"ok": True}


def broker_state() -> dict:
    from clinic.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
    except Exception as exc:  # kombu raises many transport-specific errors
        return {"ok": False, "error": exc.__class__.__name__}
    return {"ok": True}


def worker_state(*, database_ok: bool) -> dict:
    if not database_ok:
        return {"ok": False, "last_seen": None}
    latest = WorkerHeartbeat.objects.order_by("-seen_at").first()
    if latest is None:
        return {"ok": False, "last_seen": None}
    fresh = timezone.now() - latest.seen_at <= WORKER_FRESH_FOR
    return {"ok": fresh, "last_seen": latest.seen_at.isoformat()}


def health() -> tuple[dict, bool]:
    """Return the report and whether the app can serve (it cannot without its database)."""
    database = database_state()
    report = {
        "database": database,
        "broker": broker_state(),
        "worker": worker_state(database_ok=database["ok"]),
    }
    report["status"] = "ok" if all(part["ok"] for part in report.values()) else "degraded"
    if not database["ok"]:
        report["status"] = "down"
    return report, database["ok"]
