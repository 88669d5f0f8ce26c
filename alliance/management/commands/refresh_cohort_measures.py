from django.core.management.base import BaseCommand

from alliance import services


class Command(BaseCommand):
    help = (
        "Write every dosed patient's cohort analytics measures now (once after upgrading; "
        "the flag recompute keeps them fresh from then on)."
    )

    def handle(self, *args, **options):
        written = services.cohort_measures_refresh()
        self.stdout.write(f"Cohort measures written for {written} patient(s).")
