"""Import responses from a CSV file (paper or REDCap exports): all rows or none."""

import csv
import datetime
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from clinic.models import Patient
from sessions.models import Session, SessionKind

from . import scoring, services
from .models import InstrumentVersion, Response

REQUIRED = ("record_number", "instrument", "administered_at")


@dataclass
class RowError:
    line: int
    reason: str

    def __str__(self):
        return f"line {self.line}: {self.reason}"


class ImportRefused(Exception):
    def __init__(self, errors: list[RowError]):
        self.errors = errors
        super().__init__(f"{len(errors)} bad row(s); nothing was imported.")


def _when(text: str) -> datetime.datetime | None:
    moment = parse_datetime(text or "")
    if moment is None and (day := parse_date(text or "")) is not None:
        moment = datetime.datetime.combine(day, datetime.time(12, 0))
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


def import_responses(*, actor, lines) -> list[Response]:
    """Check every row first; import only when all are good, in one transaction."""
    reader = csv.DictReader(lines)
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise ImportRefused([RowError(1, f"missing column(s): {', '.join(missing)}")])
    planned, errors = [], []
    for row in reader:
        line = reader.line_num
        try:
            planned.append((line, _plan(row)))
        except ValidationError as exc:
            errors.append(RowError(line, "; ".join(exc.messages)))
    if errors:
        raise ImportRefused(errors)
    created = []
    with transaction.atomic():
        for line, plan in planned:
            try:
                created.append(services.response_record(actor=actor, **plan))
            except ValidationError as exc:  # answers fail scoring rules
                errors.append(RowError(line, "; ".join(exc.messages)))
        if errors:
            transaction.set_rollback(True)
    if errors:
        raise ImportRefused(errors)
    return created


def _plan(row: dict) -> dict:
    patient = Patient.objects.filter(record_number__iexact=(row["record_number"] or "").strip())
    patient = patient.first()
    if patient is None:
        raise ValidationError(f"unknown record number {row['record_number']!r}")
    code = (row["instrument"] or "").strip().lower()
    try:
        version = _version(code, (row.get("version") or "").strip())
    except ValidationError as exc:
        raise ValidationError(f"unknown instrument {code!r}") from exc
    administered_at = _when(row["administered_at"])
    if administered_at is None:
        raise ValidationError(f"administered_at {row['administered_at']!r} is not a date")
    if administered_at > timezone.now():
        raise ValidationError("administered_at is in the future")
    numbers = [item["number"] for item in version.definition["items"]]
    answers = {}
    for number in numbers:
        raw = (row.get(f"item_{number}") or "").strip()
        try:
            answers[number] = float(raw) if raw else None
        except ValueError as exc:
            raise ValidationError(f"item_{number} {raw!r} is not a number") from exc
    problems = scoring.validate_answers(version.definition, answers)
    if problems:
        raise ValidationError([f"item_{k}: {v}" for k, v in sorted(problems.items())])
    session = None
    if kind := (row.get("session_kind") or "").strip():
        if kind not in SessionKind.values:
            raise ValidationError(f"session_kind {kind!r} is not one of {SessionKind.values}")
        session = (
            Session.objects.filter(attendances__patient=patient, kind=kind)
            .filter(scheduled_start__lte=administered_at)
            .order_by("-scheduled_start")
            .first()
        )
    return {
        "patient": patient,
        "version": version,
        "answers": answers,
        "administered_at": administered_at,
        "source": Response.Source.IMPORT,
        "session": session,
    }
