from django.db import migrations


def load(apps, schema_editor):
    from outcomes.services import load_instruments

    load_instruments(
        Instrument=apps.get_model("outcomes", "Instrument"),
        InstrumentVersion=apps.get_model("outcomes", "InstrumentVersion"),
    )


class Migration(migrations.Migration):
    dependencies = [("outcomes", "0001_initial")]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
