from django.db import migrations


def load(apps, schema_editor):
    """MOAA/S (sedation) and CADSS (dissociation) join the instruments."""
    from outcomes.services import load_instruments

    load_instruments(
        Instrument=apps.get_model("outcomes", "Instrument"),
        InstrumentVersion=apps.get_model("outcomes", "InstrumentVersion"),
    )


class Migration(migrations.Migration):
    dependencies = [("outcomes", "0006_response_safety_unanswered")]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
