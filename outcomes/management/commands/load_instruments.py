from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from outcomes.services import load_instruments


class Command(BaseCommand):
    help = "Load the instrument definitions in outcomes/instruments/ (idempotent)."

    def handle(self, *args, **options):
        try:
            versions = load_instruments()
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        for version in versions:
            provisional = (
                " (provisional: check before clinical use)"
                if version.definition.get("provisional")
                else ""
            )
            self.stdout.write(f"{version}{provisional}")
