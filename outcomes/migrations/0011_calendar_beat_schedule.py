from django.conf import settings
from django.db import migrations


def create(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    # Clinic time: follow-ups arrive in the morning of their date, reminders a day apart.
    nine, _ = CrontabSchedule.objects.get_or_create(
        minute="0",
        hour="9",
        day_of_week="*",
        day_of_month="*",
        month_of_year="*",
        timezone=settings.TIME_ZONE,
    )
    PeriodicTask.objects.get_or_create(
        name="Questionnaires: the calendar's follow-ups and their reminders (daily)",
        defaults={"task": "outcomes.send_calendar_measures", "crontab": nine},
    )


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(task="outcomes.send_calendar_measures").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("outcomes", "0010_link_reminders_calendar_delivery_log"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
