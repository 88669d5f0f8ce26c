"""Import responses from a CSV file (paper or REDCap exports): all rows or none.

Columns: record_number, instrument (code), version (optional, default the latest),
administered_at (ISO date or date-time, clinic time zone when naive), session_kind (optional:
the response is filed under the patient's latest session of that kind up to that time),
item_1 … item_n. Every row is checked first and every bad row reported with its line; only a
file with no bad row is written, in one transaction. Each row carries a key derived from its
content, so importing the same file twice adds nothing the second time.

Other systems name things their own way ("baseline" for a preparation visit, "phq9" for
PHQ-9): a mapping translates session kinds and instrument codes first. A session kind that
still names no kind of ours (or is mapped to nothing) does not refuse the file: the row is
imported without a session and the report says so.
"""

import csv
import datetime
import json
import uuid
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from clinic import dates
from clinic.models import Patient
from sessions.models import Session, SessionKind

from . import scoring, services
from .models import InstrumentVersion, Response

REQUIRED = ("record_number", "instrument", "administered_at")
# Namespace for the content keys of imported rows (uuid5).
IMPORT_NAMESPACE = uuid.UUID("6f1c3c1e-2b0e-4f7a-9d1e-0c4b6a1f9e55")


@dataclass
class RowError:
    line: int
    reason: str

    def __str__(self):
        return f"line {self.line}: {self.reason}"


class ImportRefused(Exception):
    def __init__(self, errors: list[RowError], *, whole_file: bool = False):
        self.errors = errors
        self.whole_file = whole_file
        if whole_file:
            super().__init__(f"Nothing was imported: {errors[0]}.")
        else:
            super().__init__(f"{len(errors)} bad row(s); nothing was imported.")

    @classmethod
    def file(cls, line: int, reason: str) -> "ImportRefused":
        """The file as a whole cannot be read as the CSV described above."""
        return cls([RowError(line, reason)], whole_file=True)


def _when(text: str) -> datetime.datetime | None:
    """The date-time of a cell, or None when it is not one (also "2026-02-30")."""
    try:
        moment = parse_datetime(text or "")
        if moment is None and (day := parse_date(text or "")) is not None:
            moment = datetime.datetime.combine(day, datetime.time(12, 0))
    except ValueError:
        return None
    if moment is not None and timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _version(code: str, version: str) -> InstrumentVersion:
    if version:
        found = InstrumentVersion.objects.filter(instrument__code=code, version=version).first()
        if found is None:
            raise ValidationError(f"instrument {code!r} has no version {version!r}")
        return found
    return services.latest_version(code)


@dataclass
class ImportResult:
    created: list[Response]
    already_present: int
    # Rows imported without a session: their session kind named no kind of ours.
    warnings: list[RowError]


def parse_mapping(pairs) -> dict[str, str]:
    """`from=to` pairs (from `--map` or the lines of a mapping file; blank lines and `#`
    comments skipped) as a mapping of lower-case names. `to` may be empty: "map to nothing"."""
    mapping = {}
    for number, pair in enumerate(pairs, 1):
        pair = pair.split("#", 1)[0].strip()
        if not pair:
            continue
        source, sep, target = pair.partition("=")
        if not sep or not source.strip():
            raise ValueError(f"mapping {number}: {pair!r} is not of the form from=to")
        mapping[source.strip().lower()] = target.strip().lower()
    return mapping


NOT_TEXT = (
    "this is not a CSV text file (a spreadsheet or another binary file?): "
    "save it as CSV UTF-8 and import that"
)


def _text_lines(lines):
    for number, line in enumerate(lines, 1):
        if "\x00" in line:
            raise ImportRefused.file(number, NOT_TEXT)
        yield line


def _read(lines) -> tuple[list[str], list[tuple[int, dict]]]:
    """The header and the (line, row) pairs, or one clear error for a file that is not CSV
    text: not UTF-8, binary, empty, unreadable as CSV or without the required columns."""
    reader = csv.DictReader(_text_lines(lines))
    try:
        header = reader.fieldnames
        rows = [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError as exc:
        raise ImportRefused.file(
            reader.line_num + 1, "the file is not UTF-8 text: save it as CSV UTF-8"
        ) from exc
    except csv.Error as exc:
        raise ImportRefused.file(reader.line_num, f"this is not readable CSV ({exc})") from exc
    if not header:
        raise ImportRefused.file(1, "the file is empty")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ImportRefused.file(
            1, "the first line must name the columns; missing column(s): " + ", ".join(missing)
        )
    return header, rows


def import_responses(*, actor, lines, mapping: dict[str, str] | None = None) -> ImportResult:
    """Check every row first; import only when all are good, in one transaction."""
    _, rows = _read(lines)
    planned, errors, warnings = [], [], []
    for line, row in rows:
        try:
            plan, warning = _plan(row, mapping or {})
        except ValidationError as exc:
            errors.append(RowError(line, "; ".join(exc.messages)))
        else:
            planned.append((line, plan))
            if warning:
                warnings.append(RowError(line, warning))
    if errors:
        raise ImportRefused(errors)
    if not planned:
        raise ImportRefused([RowError(1, "the file has no rows")])
    keys = [plan["submission_key"] for _, plan in planned]
    present = set(
        Response.objects.filter(submission_key__in=keys).values_list("submission_key", flat=True)
    )
    created = []
    with transaction.atomic():
        for line, plan in planned:
            if plan["submission_key"] in present:
                continue  # imported before, or the same row twice in this file
            present.add(plan["submission_key"])
            try:
                created.append(services.response_record(actor=actor, announce=False, **plan))
            except ValidationError as exc:  # a row that changed meaning since it was checked
                errors.append(RowError(line, "; ".join(exc.messages)))
        if errors:
            transaction.set_rollback(True)
        elif created:
            services.announce_saved(created, created=True)
    if errors:
        raise ImportRefused(errors)
    return ImportResult(
        created=created, already_present=len(planned) - len(created), warnings=warnings
    )


def _mapped(value: str, mapping: dict[str, str]) -> str:
    value = value.strip().lower()
    return mapping.get(value, value)


def _plan(row: dict, mapping: dict[str, str]) -> tuple[dict, str]:
    """Everything needed to record the row and a warning (or ""), or a ValidationError naming
    every problem found."""
    problems, warning = [], ""
    record_number = (row.get("record_number") or "").strip()
    patient = Patient.objects.filter(record_number__iexact=record_number).first()
    if patient is None:
        problems.append(f"unknown record number {record_number!r}")
    code = _mapped(row.get("instrument") or "", mapping)
    wanted = (row.get("version") or "").strip()
    version = None
    try:
        version = _version(code, wanted)
    except ValidationError:
        if wanted and InstrumentVersion.objects.filter(instrument__code=code).exists():
            known = InstrumentVersion.objects.filter(instrument__code=code).values_list(
                "version", flat=True
            )
            problems.append(
                f"instrument {code!r} has no version {wanted!r} (known: {', '.join(known)})"
            )
        else:
            problems.append(f"unknown instrument {code!r}")
    administered_at = _when(row.get("administered_at"))
    if administered_at is None:
        problems.append(f"administered_at {row.get('administered_at')!r} is not a date")
    elif administered_at > timezone.now():
        problems.append("administered_at is in the future")
    elif administered_at.date() < dates.EARLIEST:
        problems.append(f"administered_at is before {dates.EARLIEST.year}: check the year")
    answers = {}
    if version is not None:
        for item in version.definition["items"]:
            number = item["number"]
            raw = (row.get(f"item_{number}") or "").strip()
            try:
                answers[number] = float(raw) if raw else None
            except ValueError:
                problems.append(f"item_{number} {raw!r} is not a number")
                answers[number] = None
        bad = scoring.validate_answers(version.definition, answers)
        problems.extend(f"item_{k}: {v}" for k, v in sorted(bad.items()))
        if not bad:
            missing = services.unscorable_missing(version.definition, answers)
            if missing:
                problems.append(
                    "too many items are unanswered to score it (missing: "
                    f"{', '.join(map(str, missing))})"
                )
    session = None
    given = (row.get("session_kind") or "").strip()
    kind = _mapped(given, mapping)
    if given and kind not in SessionKind.values:
        warning = (
            f"session_kind {given!r} is not one of {', '.join(SessionKind.values)}"
            + (f" (mapped to {kind!r})" if kind and kind != given.lower() else "")
            + ": imported without a session"
        )
        kind = ""
    if kind and patient is not None and administered_at is not None:
        session = (
            Session.objects.filter(attendances__patient=patient, kind=kind)
            .filter(scheduled_start__lte=administered_at)
            .order_by("-scheduled_start")
            .first()
        )
        if session is None:
            problems.append(f"the patient has no {kind} session before {administered_at:%Y-%m-%d}")
    if problems:
        raise ValidationError(problems)
    content = json.dumps(
        [patient.pk, version.pk, administered_at.isoformat(), sorted(answers.items())],
        default=str,
    )
    return {
        "patient": patient,
        "version": version,
        "answers": answers,
        "administered_at": administered_at,
        "source": Response.Source.IMPORT,
        "session": session,
        "submission_key": uuid.uuid5(IMPORT_NAMESPACE, content),
    }, warning
