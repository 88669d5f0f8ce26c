from django.core.management.base import BaseCommand

from alliance import exports


class Command(BaseCommand):
    help = (
        "Build the stored wide-export lines of every patient whose lines are missing or out "
        "of date (once after upgrading; beat keeps them up to date every minute from then on)."
    )

    def handle(self, *args, **options):
        built = exports.wide_lines_refresh()
        self.stdout.write(f"Wide export lines built for {built} patient(s).")
