from django.core.management.base import BaseCommand, CommandError

from outcomes.importing import ImportRefused, import_responses


class Command(BaseCommand):
    help = (
        "Import questionnaire responses from a CSV file: record_number, instrument, "
        "administered_at, version (optional), session_kind (optional), item_1 … item_n. "
        "A file with any bad row imports nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")

    def handle(self, *args, file, **options):
        try:
            with open(file, newline="", encoding="utf-8-sig") as lines:
                result = import_responses(actor=None, lines=lines)
        except FileNotFoundError as exc:
            raise CommandError(f"No such file: {file}") from exc
        except OSError as exc:  # a folder, no permission
            raise CommandError(f"Cannot read {file}: {exc.strerror}") from exc
        except ImportRefused as exc:
            if exc.whole_file:
                raise CommandError(str(exc)) from exc
            for error in exc.errors:
                self.stderr.write(str(error))
            raise CommandError(str(exc)) from exc
        message = f"Imported {len(result.created)} response(s)."
        if result.already_present:
            message += f" {result.already_present} row(s) were already imported and were skipped."
        self.stdout.write(self.style.SUCCESS(message))
