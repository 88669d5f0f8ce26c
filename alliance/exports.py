"""Exports of scores for analysis: CSV in long or wide form, de-identified by default.

CSV streams: rows come from a server-side cursor in chunks and leave as they are written, so
memory stays flat however large the clinic. Instrument definitions (2-5 kB each) are read once
per export, not once per score row.

De-identified rows carry a stable pseudonym (an HMAC of the patient's UUID with the secret
key, so it is the same in every export and cannot be reversed without the key) and days from
the first enrolment instead of dates. Identified exports are for admins, with a reason.
"""

import csv
import hashlib
import hmac
import io
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Min, QuerySet
from django.utils import timezone

from clinic.access import is_admin
from clinic.audit import audit_record
from clinic.models import AuditEvent, Patient
from outcomes import scoring
from outcomes.models import InstrumentVersion, Score

CHUNK_ROWS = 2000  # score rows fetched per round trip from the server-side cursor
FLUSH_BYTES = 64 * 1024  # CSV text handed to the response at a time


def pseudonym(patient: Patient) -> str:
    return pseudonym_of(patient.public_id)


def pseudonym_of(public_id) -> str:
    digest = hmac.new(settings.SECRET_KEY.encode(), str(public_id).encode(), hashlib.sha256)
    return f"P-{digest.hexdigest()[:12]}"


def _scores(patients: QuerySet[Patient]):
    return (
        Score.objects.filter(response__patient__in=patients)
        .select_related("response__patient", "response__version__instrument", "response__session")
        .defer("response__version__definition")
        .annotate(enrolled_on=Min("response__patient__enrolments__start_date"))
        .order_by("response__patient__record_number", "response__administered_at", "id")
    )


def _definitions() -> dict[int, dict]:
    """Every instrument version's definition by id: a handful of rows, read once."""
    return dict(InstrumentVersion.objects.values_list("id", "definition"))


def _base(score: Score, *, identified: bool) -> dict:
    response = score.response
    patient = response.patient
    when = timezone.localtime(response.administered_at).date()  # the clinic's day, not UTC's
    row = {"patient": pseudonym(patient)}
    if identified:
        row |= {
            "record_number": patient.record_number,
            "name": patient.full_name,
            "date": when.isoformat(),
        }
    row["day"] = (when - score.enrolled_on).days if score.enrolled_on else ""
    row["session_kind"] = response.session.kind if response.session else ""
    row["session"] = (response.session.label if response.session else "") or ""
    return row


def _primary(score: Score, definition: dict) -> scoring.PrimaryScore:
    return scoring.primary_score(
        definition, {score.scale: score}, score.response.extras, scale=score.scale
    )


def _blank(value) -> object:
    return "" if value is None else value


def _base_columns(identified: bool) -> list[str]:
    named = ["record_number", "name", "date"] if identified else []
    return ["patient", *named, "day", "session_kind", "session"]


LONG_COLUMNS = [
    "instrument",
    "version",
    "scale",
    "score",
    "statistic",
    "band",
    "prorated",
    "sum",
    "mean",
]


def long_columns(*, identified: bool = False) -> list[str]:
    return _base_columns(identified) + LONG_COLUMNS


def long_rows(*, patients: QuerySet[Patient], identified: bool = False) -> Iterator[dict]:
    """One row per score: the score as clinicians read it (`score`, which `statistic` it is:
    sum, mean or percent_of_max), its band, whether it was prorated, and the sum and item
    mean it comes from."""
    definitions = _definitions()
    for score in _scores(patients).iterator(chunk_size=CHUNK_ROWS):
        primary = _primary(score, definitions[score.response.version_id])
        yield _base(score, identified=identified) | {
            "instrument": score.response.version.instrument.code,
            "version": score.response.version.version,
            "scale": score.scale,
            "score": primary.shown,
            "statistic": primary.statistic,
            "band": primary.band,
            "prorated": int(primary.prorated),
            "sum": _blank(score.value),
            "mean": _blank(score.mean),
        }


def wide_columns(*, patients: QuerySet[Patient], identified: bool = False) -> list[str]:
    """The wide export's columns, known before the first row: one per instrument and scale
    present (named by its statistic), the headline scale's band (where it has bands) and
    whether it was prorated."""
    definitions = _definitions()
    present = (
        Score.objects.filter(response__patient__in=patients)
        .values_list("response__version_id", "scale")
        .distinct()
    )
    columns = []
    for version_id, scale in sorted(
        present, key=lambda pair: (definitions[pair[0]]["code"], pair[1] != "total", pair[1])
    ):
        definition = definitions[version_id]
        code, statistic = definition["code"], definition["primary"]["statistic"]
        named = [f"{code}_{scale}_{statistic}"]
        if scale == definition["primary"]["scale"]:
            named += [f"{code}_{scale}_band"] if definition["bands"] else []
            named += [f"{code}_{scale}_prorated"]
        columns += [c for c in named if c not in columns]
    return _base_columns(identified) + columns


def wide_rows(*, patients: QuerySet[Patient], identified: bool = False) -> Iterator[dict]:
    """One row per patient and time point (a session, or a day without a session). Columns
    name the statistic (`phq-9_total_sum`, `wai-sr_bond_mean`, `meq-30_total_percent_of_max`);
    each instrument's headline scale adds its band (where it has bands) and whether it was
    prorated. Scores arrive patient by patient, so only one patient's rows are held."""
    definitions = _definitions()
    rows: dict[tuple, dict] = {}
    for score in _scores(patients).iterator(chunk_size=CHUNK_ROWS):
        base = _base(score, identified=identified)
        if rows and next(iter(rows))[0] != base["patient"]:
            yield from rows.values()
            rows = {}
        key = (base["patient"], base["session"] or f"day {base['day']}")
        row = rows.setdefault(key, base)
        definition = definitions[score.response.version_id]
        code = definition["code"]
        primary = _primary(score, definition)
        row[f"{code}_{score.scale}_{primary.statistic}"] = primary.shown
        if score.scale == definition["primary"]["scale"]:
            if definition["bands"]:
                row[f"{code}_{score.scale}_band"] = primary.band
            row[f"{code}_{score.scale}_prorated"] = int(primary.prorated)
    yield from rows.values()


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value):
    """A text cell a spreadsheet would run as a formula, prefixed with a single quote so it
    shows as text. Numbers (a negative day, a score) are left as numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def csv_chunks(columns: list[str], rows: Iterable[dict]) -> Iterator[str]:
    """The CSV text in pieces of about FLUSH_BYTES, header first, as the rows arrive."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[neutralise(c) for c in columns], restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({neutralise(key): neutralise(value) for key, value in row.items()})
        if out.tell() >= FLUSH_BYTES:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    if out.tell():
        yield out.getvalue()


def to_csv(rows: list[dict]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    return "".join(csv_chunks(columns, rows))


def check_identified(*, actor, identified: bool, reason: str) -> None:
    if identified:
        if actor is not None and not is_admin(actor):
            raise PermissionDenied("Only admins export identified data.")
        if not reason.strip():
            raise ValidationError({"reason": "Say why identified data is needed."})


def _audit(*, actor, kind: str, identified: bool, reason: str, **counts) -> None:
    audit_record(
        actor=actor,
        action=AuditEvent.Action.EXPORT,
        object_type="export",
        object_id=kind,
        detail={"identified": identified, "reason": reason.strip(), **counts},
    )


def export_fhir_to(out, *, actor, patients, identified: bool = False, reason: str = "") -> int:
    """A FHIR R4 Bundle written to the binary file `out` entry by entry, validated and
    audited; returns how many entries it holds. The exports page builds it in a worker
    instead (`alliance.fhir_exports`); the shell command writes it here."""
    # Loaded here: the FHIR models are large and only exports need them.
    from .fhir import write_bundle

    check_identified(actor=actor, identified=identified, reason=reason)
    entries = write_bundle(out, patients=patients, identified=identified)
    _audit(actor=actor, kind="fhir", identified=identified, reason=reason, rows=entries)
    return entries


def export_csv(
    *, actor, patients, form: str, identified: bool = False, reason: str = ""
) -> Iterator[str]:
    """The export, audited before the first byte leaves (with the number of scores it
    holds); the CSV text follows in pieces. Identified exports need an admin and a reason."""
    check_identified(actor=actor, identified=identified, reason=reason)
    if form not in ("long", "wide"):
        raise ValidationError({"form": "Choose long or wide."})
    count = Score.objects.filter(response__patient__in=patients).count()
    _audit(actor=actor, kind=f"csv-{form}", identified=identified, reason=reason, scores=count)
    if form == "long":
        columns = long_columns(identified=identified)
        rows = long_rows(patients=patients, identified=identified)
    else:
        columns = wide_columns(patients=patients, identified=identified)
        rows = wide_rows(patients=patients, identified=identified)
    return csv_chunks(columns, rows)
