"""Fill the caseload's stored sort keys (clinic 0005) for the patients already in care, as
alliance.services.caseload_order_refresh would; from then on the flag engine keeps them."""

from django.db import migrations
from django.utils import timezone

FILL = """
UPDATE clinic_patient p SET
  caseload_flag_rank = (
    SELECT min(CASE f.severity WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2
                               WHEN 'low' THEN 3 END)
    FROM alliance_flag f
    WHERE f.patient_id = p.id AND f.status IN ('open', 'acknowledged')),
  caseload_next_dosing_at = (
    SELECT min(s.scheduled_start)
    FROM clinic_sessions_session s
    JOIN clinic_sessions_attendance a ON a.session_id = s.id
    WHERE a.patient_id = p.id AND s.kind = 'dosing' AND s.status = 'scheduled'
      AND s.scheduled_start >= %s)
WHERE p.status IN ('referred', 'screening', 'enrolled', 'in_treatment', 'follow_up')
"""


def fill(apps, schema_editor):
    schema_editor.execute(FILL, params=[timezone.now()])


class Migration(migrations.Migration):
    dependencies = [
        ("alliance", "0007_fhir_export_jobs"),
        ("clinic", "0005_caseload_sort_keys"),
        ("clinic_sessions", "0001_initial"),
    ]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
