import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic.settings.production")
# Django's system checks import the URLconf, so every view and Plotly with it: a worker would
# load the whole web layer only to repeat checks that the web process and `migrate` run.
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")

app = Celery("clinic")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Two queues (README "Workers"): a coach's save is recomputed on the interactive queue, which
# only these quick per-patient tasks use and a worker of its own consumes; everything else
# (sweeps, the drain, imports' bulk recomputes, bands, e-mail batches) goes to the default
# queue, the bulk one. A single worker on both queues would not do: its processes can all
# be busy with long bulk tasks while a coach's message waits, prefetch 1 or not.
INTERACTIVE_TASKS = frozenset({"alliance.recompute_patient", "alliance.notify_flags"})


def interactive_queue(default_queue: str) -> str:
    return f"{default_queue}.interactive"


def route_task(name, args, kwargs, options, task=None, **kw):
    """Celery router (settings CELERY_TASK_ROUTES); the queue names follow the default
    queue, so a test that gives itself a private default queue gets a private pair."""
    if name in INTERACTIVE_TASKS:
        return {"queue": interactive_queue(app.conf.task_default_queue)}
    return None
