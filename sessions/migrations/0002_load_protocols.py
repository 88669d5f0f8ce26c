from django.db import migrations


def load(apps, schema_editor):
    from sessions.services import load_protocols

    load_protocols(
        Protocol=apps.get_model("clinic_sessions", "Protocol"),
        ProtocolStep=apps.get_model("clinic_sessions", "ProtocolStep"),
    )


class Migration(migrations.Migration):
    dependencies = [("clinic_sessions", "0001_initial")]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
