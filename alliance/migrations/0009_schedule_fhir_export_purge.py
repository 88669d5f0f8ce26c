from django.db import migrations


def schedule_purge(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_15_minutes, _ = IntervalSchedule.objects.get_or_create(every=15, period="minutes")
    PeriodicTask.objects.get_or_create(
        name="Exports: delete FHIR bundles past their download time",
        defaults={"task": "alliance.purge_expired_fhir_exports", "interval": every_15_minutes},
    )


def unschedule_purge(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(task="alliance.purge_expired_fhir_exports").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("alliance", "0008_fill_caseload_sort_keys"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule_purge, unschedule_purge)]
