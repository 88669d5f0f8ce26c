"""Exports of scores for analysis: CSV in long or wide form, de-identified by default.

CSV streams: PostgreSQL writes the text (`export_sql`), a few hundred patients per statement,
and it leaves as it comes, so memory stays flat however large the clinic and the first bytes
leave at once. Each statement runs on its own and is read whole before its text is sent: no
cursor or transaction stays open across the download.

De-identified rows carry a stable pseudonym (an HMAC of the patient's UUID with the secret
key, so it is the same in every export and cannot be reversed without the key) and days from
the first enrolment instead of dates. Identified exports are for admins, with a reason.
"""

import contextlib
import csv
import hashlib
import hmac
import io
from collections.abc import Iterator
from decimal import Decimal

import psycopg
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from clinic.access import is_admin
from clinic.audit import audit_record
from clinic.locks import advisory_lock
from clinic.models import AuditEvent, Enrolment, Patient
from outcomes.models import InstrumentVersion, Response, Score

from . import export_sql
from .models import WideBuild, WideChange


def pseudonym(patient: Patient) -> str:
    return pseudonym_of(patient.public_id)


def pseudonym_of(public_id) -> str:
    return pseudonyms_of([public_id])[0]


# Pseudonyms this process has worked out, by public id as text, for the key they were made
# with: a patient's never changes while the key does not, and the analytics page needs every
# visible patient's on each request (an HMAC each, which grew with the clinic). Bounded, so a
# process that meets more patients than this starts again instead of growing without end.
KNOWN_PSEUDONYMS_LIMIT = 50_000
_known_pseudonyms: dict[str, str] = {}
_known_for_key = ""


def pseudonyms_of(public_ids) -> list[str]:
    """`pseudonym_of` for many patients: each is worked out once per process and key, with
    the key set up once per call, not per patient."""
    global _known_pseudonyms, _known_for_key
    secret = settings.SECRET_KEY
    if secret != _known_for_key or len(_known_pseudonyms) > KNOWN_PSEUDONYMS_LIMIT:
        _known_pseudonyms, _known_for_key = {}, secret
    known = _known_pseudonyms
    keyed = None
    digests = []
    for public_id in public_ids:
        text = str(public_id)
        digest = known.get(text)
        if digest is None:
            if keyed is None:
                keyed = hmac.new(secret.encode(), digestmod=hashlib.sha256)
            made = keyed.copy()
            made.update(text.encode())
            digest = known[text] = f"P-{made.hexdigest()[:12]}"
        digests.append(digest)
    return digests


BATCH_PATIENTS = 500  # patients per statement: bounds memory and each statement's length
FIRST_BATCH_PATIENTS = 50
FLUSH_BYTES = 64 * 1024  # CSV bytes handed to the response at a time


def _definitions() -> dict[int, dict]:
    """Every instrument version's definition by id: a handful of rows, read once."""
    return dict(InstrumentVersion.objects.values_list("id", "definition"))


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


def _scale_codes(definition: dict) -> list[str]:
    return ["total", *(s["code"] for s in definition["subscales"])]


def _present(patients: QuerySet[Patient]) -> dict[tuple[int, str], int]:
    """How many scores each (instrument version, scale) has among these patients."""
    visible, params = patients.order_by().values("pk").query.sql_with_params()
    statement = export_sql.present(visible)
    # Positional, as the patients' query is: theirs come first, then each time zone.
    zones = [timezone.get_current_timezone_name()] * statement.count("%(time_zone)s")
    with connection.cursor() as cursor:
        cursor.execute(statement.replace("%(time_zone)s", "%s"), [*params, *zones])
        counted = {}
        for key, scores in cursor.fetchall():
            version_id, _, scale = key.partition(":")
            counted[int(version_id), scale] = scores
        return counted


def wide_columns(*, present, definitions: dict[int, dict], identified: bool = False) -> list[str]:
    """The wide export's columns, known before the first row: one per instrument and scale
    present (named by its statistic), the headline scale's band (where it has bands) and
    whether it was prorated."""
    columns = []
    for version_id, scale in sorted(
        present, key=lambda pair: (definitions[pair[0]]["code"], pair[1] != "total", pair[1])
    ):
        columns += [c for c in _wide_cells(definitions[version_id], scale) if c not in columns]
    return _base_columns(identified) + columns


def _wide_cells(definition: dict, scale: str) -> list[str]:
    """The wide columns one score fills: its primary score, and for the headline scale its
    band (where the instrument has bands) and whether it was prorated."""
    code, statistic = definition["code"], definition["primary"]["statistic"]
    named = [f"{code}_{scale}_{statistic}"]
    if scale == definition["primary"]["scale"]:
        named += [f"{code}_{scale}_band"] if definition["bands"] else []
        named += [f"{code}_{scale}_prorated"]
    return named


def _cell(value: str) -> str:
    """One text cell exactly as `csv` writes it."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([neutralise(value), ""])
    return out.getvalue()[:-1]


def _csv_line(cells: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow([neutralise(c) for c in cells])
    return out.getvalue().encode()


def _scales() -> dict[str, list]:
    """Every instrument version's scales as parallel arrays for the statement: the cells a
    long row starts with, the statistic, the scale's range for percent of maximum, and (for
    the wide form) the names of the columns its score fills."""
    arrays: dict[str, list] = {
        name: []
        for name in (
            "version_ids",
            "scales",
            "statistics",
            "lows",
            "highs",
            "leading",
            "statistic_cells",
            "value_cols",
            "band_cols",
            "prorated_cols",
        )
    }
    versions = InstrumentVersion.objects.values_list(
        "id", "instrument__code", "version", "definition"
    )
    for version_id, code, version, definition in versions:
        statistic = definition["primary"]["statistic"]
        for scale in _scale_codes(definition):
            filled = _wide_cells(definition, scale)
            primary = scale == definition["primary"]["scale"]
            band = filled[1] if primary and definition["bands"] else None
            arrays["version_ids"].append(version_id)
            arrays["scales"].append(scale)
            arrays["statistics"].append(statistic)
            arrays["lows"].append(Decimal(str(definition["scale"]["min"])))
            arrays["highs"].append(Decimal(str(definition["scale"]["max"])))
            arrays["leading"].append(",".join(_cell(c) for c in (code, version, scale)))
            arrays["statistic_cells"].append(_cell(statistic))
            arrays["value_cols"].append(filled[0])
            arrays["band_cols"].append(band)
            arrays["prorated_cols"].append(filled[-1] if primary else None)
    return arrays


def _patient_batches(patients: QuerySet[Patient]) -> Iterator[tuple[list[int], list[str]]]:
    """The patients' ids and pseudonyms in record-number order, each batch read by its own
    short query after the last record number seen. The first batches are small so that the
    first bytes leave at once; they double up to BATCH_PATIENTS."""
    after, size = None, min(FIRST_BATCH_PATIENTS, BATCH_PATIENTS)
    while True:
        page = patients.order_by("record_number")
        if after is not None:
            page = page.filter(record_number__gt=after)
        batch = list(page.values_list("pk", "public_id", "record_number")[:size])
        if not batch:
            return
        yield [pk for pk, _, _ in batch], pseudonyms_of(public_id for _, public_id, _ in batch)
        if len(batch) < size:
            return
        after, size = batch[-1][2], min(size * 2, BATCH_PATIENTS)


def _blocks(statement: str, params: dict) -> list[bytes]:
    """Each patient's lines, read whole before the first leaves: the statement ends at once
    and no cursor or transaction stays open while a slow client downloads."""
    connection.ensure_connection()
    # COPY takes no bound parameters: merge them on the client, as psycopg does itself.
    sql = psycopg.ClientCursor(connection.connection).mogrify(statement, params)
    # A transaction of its own, for SET LOCAL: the planner's cost estimates for these string
    # expressions would start JIT compilation, which costs more than the statement.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        with cursor.copy(sql) as copy:
            copy.set_types(["bytea"])
            return [block for (block,) in copy.rows() if block is not None]


def _csv_bytes(*, header: list[str], statement: str, patients, params: dict) -> Iterator[bytes]:
    """The CSV in pieces of about FLUSH_BYTES, header first, batch after batch."""
    piece = bytearray(_csv_line(header))
    for patient_ids, pseudonyms in _patient_batches(patients):
        blocks = _blocks(statement, params | {"patient_ids": patient_ids, "pseudonyms": pseudonyms})
        for block in blocks:
            piece += block
            if len(piece) >= FLUSH_BYTES:
                yield bytes(piece)
                piece.clear()
    if piece:
        yield bytes(piece)


def neutralise(value):
    """A text cell a spreadsheet would run as a formula, prefixed with a single quote so it
    shows as text. Numbers (a negative day, a score) are left as numbers."""
    if isinstance(value, str) and value.startswith(export_sql.FORMULA_STARTS):
        return "'" + value
    return value


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
) -> Iterator[bytes]:
    """The export, audited before the first byte leaves (with the number of scores it
    holds); the CSV follows in pieces of UTF-8. Identified exports need an admin and a
    reason."""
    check_identified(actor=actor, identified=identified, reason=reason)
    if not isinstance(patients, QuerySet):  # a list of patients: the statements need a query
        patients = Patient.objects.filter(pk__in=[patient.pk for patient in patients])
    if form not in ("long", "wide"):
        raise ValidationError({"form": "Choose long or wide."})
    present = _present(patients)
    _audit(
        actor=actor,
        kind=f"csv-{form}",
        identified=identified,
        reason=reason,
        scores=sum(present.values()),
    )
    if form == "long":
        header = long_columns(identified=identified)
        statement = export_sql.long_statement(identified=identified)
    else:
        definitions = _definitions()
        header = wide_columns(present=present, definitions=definitions, identified=identified)
        leading = len(_base_columns(identified))
        statement = export_sql.wide_statement(identified=identified, columns=header[leading:])
    params = _scales() | {"time_zone": timezone.get_current_timezone_name()}
    return _csv_bytes(header=header, statement=statement, patients=patients, params=params)


# --- stored wide lines ---------------------------------------------------------------------
#
# Pivoting scores into time points is most of the wide export's cost, so each patient's time
# points are kept in `WideLine`, built here and read by the export wherever they are fresh
# (`export_sql.fresh_lines`). Database triggers record every change that could alter them;
# a build clears the changes its snapshot saw. Beat builds what changed every minute.

WIDE_LINES_PATIENTS = 1000  # patients per build statement: each chunk commits on its own


def wide_lines_due() -> list[int]:
    """Patients whose stored wide lines are missing (though they have answers), were built
    for another time zone, or have a change recorded since they were built."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT p.id FROM {quote(Patient._meta.db_table)} p
             WHERE EXISTS (SELECT FROM {quote(WideChange._meta.db_table)} c
                            WHERE c.patient_id = p.id)
                OR (EXISTS (SELECT FROM {quote(Response._meta.db_table)} r
                             WHERE r.patient_id = p.id)
                    AND NOT EXISTS (SELECT FROM {quote(WideBuild._meta.db_table)} w
                                     WHERE w.patient_id = p.id AND w.time_zone = %s))
             ORDER BY p.id
            """,
            [timezone.get_current_timezone_name()],
        )
        return [pk for (pk,) in cursor.fetchall()]


def wide_lines_refresh(*, patient_ids=None) -> int:
    """Build the stored wide lines of these patients (None: every patient `wide_lines_due`),
    a chunk per statement. One build runs at a time; another that finds it running returns
    at once, as the next minute's build will pick up what it leaves. Returns how many
    patients were built."""
    with advisory_lock("alliance.wide_lines") as mine:
        if not mine:
            return 0
        if patient_ids is None:
            # Changes of patients deleted since: nobody will build them.
            WideChange.objects.exclude(patient_id__in=Patient.objects.values("pk")).delete()
            patient_ids = wide_lines_due()
        ids = sorted(set(patient_ids))
        shared = _scales() | {"time_zone": timezone.get_current_timezone_name()}
        for start in range(0, len(ids), WIDE_LINES_PATIENTS):
            chunk = ids[start : start + WIDE_LINES_PATIENTS]
            params = shared | {"patient_ids": chunk, "pseudonyms": [""] * len(chunk)}
            # As for the export: JIT would cost more than the statement.
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL jit = off")
                cursor.execute(export_sql.wide_lines_build(), params)
        return len(ids)


# The tables whose inserts the triggers of migration 0012 record (sessions: updates only).
WIDE_CHANGES_ON_INSERT = (Response, Score, Enrolment)


@contextlib.contextmanager
def wide_changes_recorded_once(patient_ids):
    """For a bulk load that inserts answers, scores and enrolments in a transaction of its
    own, with these tables locked until commit (`clinic.bulk.references_checked_once` locks
    them): their insert triggers are off inside, so that they do not fire for each batch
    copied, and one change per patient of `patient_ids()` (called as the block ends) is
    recorded instead. The DDL rolls back with a failed load, and the triggers with it."""
    if not connection.in_atomic_block:
        raise RuntimeError("wide_changes_recorded_once alters tables: only in a transaction.")
    tables = [connection.ops.quote_name(m._meta.db_table) for m in WIDE_CHANGES_ON_INSERT]
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER wide_change_insert")
    yield
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER wide_change_insert")
        cursor.execute(
            f"""
            INSERT INTO {connection.ops.quote_name(WideChange._meta.db_table)} (patient_id, xid)
            SELECT DISTINCT id, pg_current_xact_id()::text::bigint
              FROM unnest(%s::bigint[]) AS loaded(id)
            ON CONFLICT DO NOTHING
            """,
            [list(patient_ids())],
        )
