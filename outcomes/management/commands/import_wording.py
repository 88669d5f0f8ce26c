import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from outcomes.models import InstrumentVersion
from outcomes.services import wording_import


class Command(BaseCommand):
    help = (
        "Import the official item wording of a licensed instrument version from a JSON file "
        '{"1": "item text", "2": "..."}. Shown instead of our short labels.'
    )

    def add_arguments(self, parser):
        parser.add_argument("code")
        parser.add_argument("version")
        parser.add_argument("file")

    def handle(self, *args, code, version, file, **options):
        found = InstrumentVersion.objects.filter(instrument__code=code, version=version).first()
        if found is None:
            raise CommandError(f"No instrument {code} version {version}.")
        try:
            with open(file, encoding="utf-8") as handle:
                wording = json.load(handle)
            count = wording_import(actor=None, version=found, wording=wording)
        except (OSError, json.JSONDecodeError, ValidationError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Imported wording for {count} items of {found}."))
