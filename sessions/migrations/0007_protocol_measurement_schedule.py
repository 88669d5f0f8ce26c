from django.db import migrations, models


def load(apps, schema_editor):
    from sessions.services import load_protocols

    load_protocols(
        Protocol=apps.get_model("clinic_sessions", "Protocol"),
        ProtocolStep=apps.get_model("clinic_sessions", "ProtocolStep"),
    )


class Migration(migrations.Migration):
    dependencies = [("clinic_sessions", "0006_dosing_day")]

    operations = [
        migrations.AddField(
            model_name="protocol",
            name="measurement_schedule",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.RunPython(load, migrations.RunPython.noop),
    ]
