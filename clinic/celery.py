import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic.settings.production")
# Django's system checks import the URLconf, so every view and Plotly with it: a worker would
# load the whole web layer only to repeat checks that the web process and `migrate` run.
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")

app = Celery("clinic")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
