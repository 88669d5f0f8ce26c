import socket

from celery import shared_task
from celery.signals import worker_ready
from django.utils import timezone

from .models import WorkerHeartbeat


def record_heartbeat(hostname: str) -> None:
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname, defaults={"seen_at": timezone.now()}
    )


@shared_task(name="clinic.heartbeat", ignore_result=True)
def heartbeat():
    record_heartbeat(heartbeat.request.hostname or socket.gethostname())


@worker_ready.connect
def _on_worker_ready(sender=None, **kwargs):
    record_heartbeat(getattr(sender, "hostname", None) or socket.gethostname())
