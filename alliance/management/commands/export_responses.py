from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from alliance.exports import check_identified, export_csv, export_fhir_to
from clinic.models import Patient


class Command(BaseCommand):
    help = "Export every score as CSV (de-identified unless --identified with --reason)."

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=["csv", "fhir"], default="csv")
        parser.add_argument("--layout", choices=["long", "wide"], default="long")
        parser.add_argument("--out", required=True, help="File to write.")
        parser.add_argument("--identified", action="store_true")
        parser.add_argument("--reason", default="")

    def handle(self, *args, format, layout, out, identified, reason, **options):
        try:
            # Refused before the file is opened, so a refusal leaves no empty file behind.
            check_identified(actor=None, identified=identified, reason=reason)
            if format == "fhir":
                with open(out, "wb") as handle:
                    export_fhir_to(
                        handle,
                        actor=None,
                        patients=Patient.objects.all(),
                        identified=identified,
                        reason=reason,
                    )
            else:
                body = export_csv(
                    actor=None,
                    patients=Patient.objects.all(),
                    form=layout,
                    identified=identified,
                    reason=reason,
                )
                with open(out, "wb") as handle:
                    handle.writelines(body)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(self.style.SUCCESS(f"Wrote {out}."))
