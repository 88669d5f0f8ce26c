from django.db import migrations


def create(apps, schema_editor):
    FlagRule = apps.get_model("alliance", "FlagRule")
    FlagRule.objects.get_or_create(program=None)

    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_15, _ = IntervalSchedule.objects.get_or_create(every=15, period="minutes")
    PeriodicTask.objects.get_or_create(
        name="Flags: patients with dosing in the next 7 days",
        defaults={"task": "alliance.sweep_upcoming_dosing", "interval": every_15},
    )
    nightly, _ = CrontabSchedule.objects.get_or_create(
        minute="30", hour="2", day_of_week="*", day_of_month="*", month_of_year="*"
    )
    PeriodicTask.objects.get_or_create(
        name="Flags: nightly sweep of every patient in care",
        defaults={"task": "alliance.sweep_all", "crontab": nightly},
    )


class Migration(migrations.Migration):
    dependencies = [
        ("alliance", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
