"""Exports of scores for analysis: CSV in long or wide form, de-identified by default.

De-identified rows carry a stable pseudonym (an HMAC of the patient's UUID with the secret
key, so it is the same in every export and cannot be reversed without the key) and days from
the first enrolment instead of dates. Identified exports are for admins, with a reason.
"""

import csv
import hashlib
import hmac
import io
import json

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Min, QuerySet
from django.utils import timezone

from clinic.access import is_admin
from clinic.models import AuditEvent, Patient
from outcomes.models import Score


def pseudonym(patient: Patient) -> str:
    return pseudonym_of(patient.public_id)


def pseudonym_of(public_id) -> str:
    digest = hmac.new(settings.SECRET_KEY.encode(), str(public_id).encode(), hashlib.sha256)
    return f"P-{digest.hexdigest()[:12]}"


def _scores(patients: QuerySet[Patient]):
    return (
        Score.objects.filter(response__patient__in=patients)
        .select_related("response__patient", "response__version__instrument", "response__session")
        .annotate(enrolled_on=Min("response__patient__enrolments__start_date"))
        .order_by("response__patient__record_number", "response__administered_at", "id")
    )


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


def long_rows(*, patients: QuerySet[Patient], identified: bool = False) -> list[dict]:
    """One row per score."""
    return [
        _base(score, identified=identified)
        | {
            "instrument": score.response.version.instrument.code,
            "version": score.response.version.version,
            "scale": score.scale,
            "value": "" if score.value is None else score.value,
            "mean": "" if score.mean is None else score.mean,
            "band": score.band,
        }
        for score in _scores(patients)
    ]


def wide_rows(*, patients: QuerySet[Patient], identified: bool = False) -> list[dict]:
    """One row per patient and time point (a session, or a day without a session)."""
    rows: dict[tuple, dict] = {}
    for score in _scores(patients):
        base = _base(score, identified=identified)
        key = (base["patient"], base["session"] or f"day {base['day']}")
        row = rows.setdefault(key, base)
        code = score.response.version.instrument.code
        value = score.mean if score.mean is not None else score.value
        row[f"{code}_{score.scale}"] = "" if value is None else value
    return list(rows.values())


def to_csv(rows: list[dict]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _check_identified(*, actor, identified: bool, reason: str) -> None:
    if identified:
        if actor is not None and not is_admin(actor):
            raise PermissionDenied("Only admins export identified data.")
        if not reason.strip():
            raise ValidationError({"reason": "Say why identified data is needed."})


def _audit(*, actor, kind: str, identified: bool, reason: str, count: int) -> None:
    AuditEvent.objects.create(
        actor=actor,
        action=AuditEvent.Action.EXPORT,
        object_type="export",
        object_id=kind,
        detail={"identified": identified, "reason": reason.strip(), "rows": count},
    )


def export_fhir(*, actor, patients, identified: bool = False, reason: str = "") -> str:
    """A FHIR R4 Bundle of Questionnaires and QuestionnaireResponses, validated and audited."""
    # Loaded here: the FHIR models are large and only exports need them.
    from .fhir import bundle

    _check_identified(actor=actor, identified=identified, reason=reason)
    data = bundle(patients=patients, identified=identified)
    _audit(actor=actor, kind="fhir", identified=identified, reason=reason, count=len(data["entry"]))
    return json.dumps(data, indent=1)


def export_csv(*, actor, patients, form: str, identified: bool = False, reason: str = "") -> str:
    """The export itself, audited. Identified exports need an admin and a stated reason."""
    _check_identified(actor=actor, identified=identified, reason=reason)
    if form not in ("long", "wide"):
        raise ValidationError({"form": "Choose long or wide."})
    rows = (long_rows if form == "long" else wide_rows)(patients=patients, identified=identified)
    _audit(actor=actor, kind=f"csv-{form}", identified=identified, reason=reason, count=len(rows))
    return to_csv(rows)
