"""Writes about questionnaires: load instruments, record and edit responses with their scores.

A response, its answers and its Score rows are written in one transaction; the flag
recompute is asked for only after that transaction commits.
"""

import datetime
import hashlib
import json
import uuid

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from clinic.audit import audit_record
from clinic.models import AuditEvent, Patient

from . import scoring
from .models import Instrument, InstrumentVersion, Response, Score


def _hash(definition: dict) -> str:
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()


@transaction.atomic
def load_instruments(
    *,
    definitions: list[dict] | None = None,
    Instrument=Instrument,  # noqa: N803 - the data migration passes its historical models
    InstrumentVersion=InstrumentVersion,  # noqa: N803
) -> list:
    """Load every definition file. Idempotent; a changed file under an existing version is
    refused, because stored responses were scored by the old one."""
    loaded = []
    for definition in definitions if definitions is not None else scoring.load_all():
        scoring.validate_definition(definition)
        instrument, _ = Instrument.objects.update_or_create(
            code=definition["code"],
            defaults={"name": definition["name"], "respondent": definition["respondent"]},
        )
        digest = _hash(definition)
        version, created = InstrumentVersion.objects.get_or_create(
            instrument=instrument,
            version=definition["version"],
            defaults={"definition": definition, "content_hash": digest},
        )
        if not created and version.content_hash != digest:
            raise ValidationError(
                f"{definition['code']} version {definition['version']} differs from the one "
                "already loaded. Give the changed file a new version number."
            )
        loaded.append(version)
    return loaded


def latest_version(code: str) -> InstrumentVersion:
    version = (
        InstrumentVersion.objects.select_related("instrument")
        .filter(instrument__code=code)
        .order_by("-loaded_at", "-id")
        .first()
    )
    if version is None:
        raise ValidationError({"instrument": f"Unknown instrument {code!r}."})
    return version


def _clean_answers(definition: dict, answers: dict) -> dict[int, float | None]:
    cleaned = {int(k): (None if v in (None, "") else float(v)) for k, v in answers.items()}
    errors = scoring.validate_answers(definition, cleaned)
    if errors:
        raise ValidationError({f"item_{item}": message for item, message in errors.items()})
    return cleaned


def _score(definition: dict, answers: dict, *, allow_incomplete: bool) -> scoring.ScoreResult:
    result = scoring.score(definition, answers)
    total = next((s for s in result.scales if s.code == "total"), None)
    if total is not None and total.value is None and not allow_incomplete:
        missing = [
            str(item["number"])
            for item in definition["items"]
            if item.get("scored", True) and answers.get(item["number"]) is None
        ]
        raise ValidationError(
            {
                "__all__": "Too many items are unanswered to score this questionnaire "
                f"(missing: {', '.join(missing)}). Complete them, or tick "
                "'save incomplete' to keep the answers without a total."
            }
        )
    return result


def _write_scores(response: Response, result: scoring.ScoreResult) -> None:
    response.scores.all().delete()
    Score.objects.bulk_create(
        Score(
            response=response,
            scale=scale.code,
            value=scale.value,
            mean=scale.mean,
            band=scale.band or "",
            prorated=scale.prorated,
            complete=scale.complete,
        )
        for scale in result.scales
    )


def _safety(result: scoring.ScoreResult) -> list[dict]:
    return [
        {"item": h.item, "value": h.value, "urgent": h.urgent, "message": h.message}
        for h in result.safety_hits
    ]


def _after_commit(patient_id: int) -> None:
    from alliance.queue import enqueue_recompute

    transaction.on_commit(lambda: enqueue_recompute(patient_ids=[patient_id]), robust=True)


@transaction.atomic
def response_record(
    *,
    actor,
    patient: Patient,
    version: InstrumentVersion,
    answers: dict,
    administered_at: datetime.datetime,
    source: str = Response.Source.CLINIC,
    session=None,
    about_coach=None,
    submission_key: uuid.UUID | None = None,
    allow_incomplete: bool = False,
) -> Response:
    """Record one questionnaire. With a submission key already used, return that response."""
    if submission_key is not None:
        existing = Response.objects.filter(submission_key=submission_key).first()
        if existing is not None:
            return existing
    definition = version.definition
    cleaned = _clean_answers(definition, answers)
    result = _score(definition, cleaned, allow_incomplete=allow_incomplete)
    try:
        with transaction.atomic():
            response = Response.objects.create(
                patient=patient,
                version=version,
                respondent=definition["respondent"],
                entered_by=actor if actor is not None and actor.is_authenticated else None,
                source=source,
                administered_at=administered_at,
                session=session,
                about_coach=about_coach,
                submission_key=submission_key,
                complete=result.complete,
                safety_hits=_safety(result),
                has_safety_hit=bool(result.safety_hits),
                answers={str(k): v for k, v in sorted(cleaned.items())},
            )
    except IntegrityError:
        # The same form submitted twice at the same moment: the other request won.
        return Response.objects.get(submission_key=submission_key)
    _write_scores(response, result)
    audit_record(
        actor=actor,
        action=AuditEvent.Action.CREATE,
        target=response,
        patient=patient,
        detail={"instrument": version.instrument.code, "source": source},
    )
    _after_commit(patient.pk)
    return response


@transaction.atomic
def response_edit(
    *, actor, response: Response, answers: dict, reason: str, allow_incomplete: bool = False
) -> Response:
    """Correct a response. The previous version stays in its history with the reason."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why the answers are being corrected."})
    response = Response.objects.select_for_update().get(pk=response.pk)
    definition = response.version.definition
    cleaned = _clean_answers(definition, answers)
    result = _score(definition, cleaned, allow_incomplete=allow_incomplete)
    response.answers = {str(k): v for k, v in sorted(cleaned.items())}
    response.complete = result.complete
    response.safety_hits = _safety(result)
    response.has_safety_hit = bool(result.safety_hits)
    response._change_reason = reason
    response.save()
    _write_scores(response, result)
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=response,
        patient=response.patient,
        detail={"reason": reason},
    )
    _after_commit(response.patient_id)
    return response


@transaction.atomic
def wording_import(*, actor, version: InstrumentVersion, wording: dict) -> int:
    """Official item text for a licensed instrument version, replacing our short labels.

    `wording` maps item numbers to text; every item of the version must be present.
    """
    from .models import ItemWording

    numbers = {item["number"] for item in version.definition["items"]}
    given = {int(k): (v or "").strip() for k, v in wording.items()}
    unknown, missing = set(given) - numbers, numbers - set(given)
    empty = [n for n, text in given.items() if not text]
    if unknown or missing or empty:
        raise ValidationError(
            f"Wording must cover items {min(numbers)}-{max(numbers)} exactly, with text for each"
            f" (unknown: {sorted(unknown)}, missing: {sorted(missing)}, empty: {sorted(empty)})."
        )
    version.wording.all().delete()
    ItemWording.objects.bulk_create(
        ItemWording(version=version, item=n, text=text) for n, text in sorted(given.items())
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=version,
        detail={"wording": "imported", "items": len(given)},
    )
    return len(given)
