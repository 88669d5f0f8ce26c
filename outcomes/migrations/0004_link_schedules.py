from django.db import migrations


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    PeriodicTask.objects.get_or_create(
        name="Questionnaires: e-mail links for newly due measures",
        defaults={"task": "outcomes.send_due_links", "interval": hourly},
    )
    PeriodicTask.objects.get_or_create(
        name="Questionnaires: daily reminders (at most three)",
        defaults={"task": "outcomes.send_reminders", "interval": hourly},
    )


class Migration(migrations.Migration):
    dependencies = [
        ("outcomes", "0003_self_report_link"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
