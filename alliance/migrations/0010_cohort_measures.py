"""The analytics page's per-patient measures. Rows are written by the flag recompute; an
installation upgraded with patients already dosed fills them once with
`manage.py refresh_cohort_measures` (the nightly sweep covers only patients in care, and the
alumni hold most follow-ups). Until a row is there the page computes that patient live, so the
fill only makes the page fast, never changes its numbers. Not filled here: a migration that
ran today's service code would break the day that code outgrows this schema."""

import django.db.models.deletion
from django.db import migrations, models


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
    ]
