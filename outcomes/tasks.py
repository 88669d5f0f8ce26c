from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import kiosk, links, services

_RETRY = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 2,
    "max_retries": 5,
    "acks_late": True,
}


@shared_task(name="outcomes.send_due_links", **_RETRY)
def send_due_links() -> int:
    return links.send_due_links()


@shared_task(name="outcomes.send_reminders", **_RETRY)
def send_reminders() -> int:
    links.forget_old_guesses()
    return links.send_reminders()


@shared_task(name="outcomes.send_calendar_measures", **_RETRY)
def send_calendar_measures() -> int:
    return links.send_calendar_measures()


@shared_task(name="outcomes.end_idle_kiosks", **_RETRY)
def end_idle_kiosks() -> int:
    return kiosk.end_idle_kiosks()


@shared_task(name="outcomes.count_completion", **_RETRY)
def count_completion() -> int:
    return services.completion_summaries_refresh()
