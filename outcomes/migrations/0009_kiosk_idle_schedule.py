from django.db import migrations


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_five, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    PeriodicTask.objects.get_or_create(
        name="Kiosk: end tablets left idle for 30 minutes",
        defaults={"task": "outcomes.end_idle_kiosks", "interval": every_five},
    )


class Migration(migrations.Migration):
    dependencies = [
        ("outcomes", "0008_kiosk"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
