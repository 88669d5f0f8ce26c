from django.core.management.base import BaseCommand

from sessions.services import load_protocols


class Command(BaseCommand):
    help = "Create or update the shipped session protocols (idempotent)."

    def handle(self, *args, **options):
        for protocol in load_protocols():
            self.stdout.write(f"{protocol.name}: {protocol.steps.count()} steps")
