from django.core.management.base import BaseCommand, CommandError

from alliance import selectors, services
from clinic.models import Patient


class Command(BaseCommand):
    help = "Recompute alliance trajectories and flags now (the same code the worker runs)."

    def add_arguments(self, parser):
        parser.add_argument("--patient", help="A patient's public UUID; default: all in care.")

    def handle(self, *args, patient=None, **options):
        if patient:
            try:
                ids = [Patient.objects.get(public_id=patient).pk]
            except (Patient.DoesNotExist, ValueError) as exc:
                raise CommandError(f"No patient with id {patient}.") from exc
        else:
            ids = selectors.patients_in_care_ids()
        totals = {"created": 0, "updated": 0, "cleared": 0}
        for patient_id in ids:
            for key, flags in services.recompute_patient(patient_id=patient_id).items():
                totals[key] += len(flags)
        for flag_id in selectors.unnotified_flag_ids():
            services.notify_flag(flag_id=flag_id)
        self.stdout.write(
            f"{len(ids)} patient(s): {totals['created']} flag(s) raised, "
            f"{totals['updated']} updated, {totals['cleared']} cleared."
        )
