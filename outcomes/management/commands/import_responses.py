from django.core.management.base import BaseCommand, CommandError

from outcomes.importing import ImportRefused, import_responses, parse_mapping


class Command(BaseCommand):
    help = (
        "Import questionnaire responses from a CSV file: record_number, instrument, "
        "administered_at, version (optional), session_kind (optional), item_1 … item_n. "
        "A file with any bad row imports nothing; a row whose session kind names no kind of "
        "ours is imported without a session, with a warning."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="FROM=TO",
            help="Translate a session kind or instrument code of the other system, e.g. "
            "--map baseline=preparation --map phq9=phq-9 (--map screening= maps to nothing). "
            "Repeatable.",
        )
        parser.add_argument(
            "--map-file", help="A file of FROM=TO lines (# starts a comment), as --map."
        )

    def handle(self, *args, file, map, map_file, **options):
        try:
            pairs = list(map)
            if map_file:
                with open(map_file, encoding="utf-8-sig") as lines:
                    pairs = [*lines, *pairs]  # --map wins over the file
            mapping = parse_mapping(pairs)
        except FileNotFoundError as exc:
            raise CommandError(f"No such mapping file: {map_file}") from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        try:
            with open(file, newline="", encoding="utf-8-sig") as lines:
                result = import_responses(actor=None, lines=lines, mapping=mapping)
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
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        message = f"Imported {len(result.created)} response(s)."
        if result.already_present:
            message += f" {result.already_present} row(s) were already imported and were skipped."
        if result.warnings:
            message += f" {len(result.warnings)} row(s) were imported without a session."
        self.stdout.write(self.style.SUCCESS(message))
