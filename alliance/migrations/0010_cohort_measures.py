"""The analytics page's per-patient measures, filled here for every patient already dosed:
the nightly sweep covers only patients in care, and the alumni, who hold most follow-ups,
are recomputed only when something of theirs changes. Until a row is there the page computes
that patient live, so the fill only makes the page fast, never changes its numbers."""

import django.db.models.deletion
from django.db import migrations, models


def fill(apps, schema_editor):
    # The service's own query and writer, so that the rows are those the recompute writes;
    # it reads only tables this migration's dependencies have created.
    from alliance.services import cohort_measures_refresh

    cohort_measures_refresh()


class Migration(migrations.Migration):
    dependencies = [
        ("alliance", "0009_schedule_fhir_export_purge"),
        ("clinic", "0005_caseload_sort_keys"),
        ("clinic_sessions", "0007_protocol_measurement_schedule"),
        ("outcomes", "0011_calendar_beat_schedule"),
    ]

    operations = [
        migrations.CreateModel(
            name="CohortMeasures",
            fields=[
                (
                    "patient",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="clinic.patient",
                    ),
                ),
                ("first_dosing", models.DateTimeField()),
                ("last_dosing", models.DateTimeField()),
                ("measures", models.JSONField(default=dict)),
                ("computed_at", models.DateTimeField()),
            ],
            options={
                "verbose_name_plural": "cohort measures",
            },
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
