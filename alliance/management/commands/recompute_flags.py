from django.core.management.base import BaseCommand, CommandError

from alliance import flag_inputs, services
from clinic.models import Patient


class Command(BaseCommand):
    help = "Recompute alliance trajectories and flags now (the same code the worker runs)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--patient",
            help="A patient's public UUID; default: all in care and all with open flags.",
        )

    def handle(self, *args, patient=None, **options):
        if patient:
            try:
                ids = [Patient.objects.get(public_id=patient).pk]
            except (Patient.DoesNotExist, ValueError) as exc:
                raise CommandError(f"No patient with id {patient}.") from exc
        else:
            ids = flag_inputs.patients_to_sweep_ids()
        result = services.recompute_patients(patient_ids=ids)
        totals, failed = result.totals, result.failed
        for flag_id in flag_inputs.unnotified_flag_ids():
            services.notify_flag(flag_id=flag_id)
        self.stdout.write(
            f"{len(ids)} patient(s): {totals['created']} flag(s) raised, "
            f"{totals['updated']} updated, {totals['cleared']} cleared."
        )
        if failed:
            raise CommandError(f"{len(failed)} patient(s) failed; run the command again.")
