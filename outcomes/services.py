"""Writes about questionnaires: load instruments, record and edit responses with their scores.

A response, its answers and its Score rows are written in one transaction, and the apps above
hear about it inside that transaction (`outcomes.signals.responses_saved`), so what they write
in answer (a safety flag) commits with it or not at all.

Missing answers: a questionnaire whose total cannot be scored under its missing-item rule
(e.g. a WAI-SR subscale with 2 of 4 items, more than 2 PHQ-9 items) is refused with the list
of unanswered items, unless the caller passes `allow_incomplete=True` (the "save incomplete"
box on the staff form): then the answers are kept, `complete` is False and the total Score row
has no value. Self-report links and imports never save incomplete totals.
"""

import datetime
import hashlib
import json
import uuid
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from clinic import dates
from clinic.audit import AUDIT_FIELDS, audit_record, audit_values
from clinic.bulk import copy_values, next_ids
from clinic.models import AuditEvent, Patient, Program

from . import scoring, selectors, signals
from .models import CompletionSummary, Instrument, InstrumentVersion, Response, Score

# Paper answers are dated by hand and clocks drift: a few minutes ahead is still "now".
FUTURE_TOLERANCE = datetime.timedelta(minutes=5)


# Keys that say how a score is presented or where a fact comes from, not how answers are
# scored: a shipped file may amend them under the same version (stored scores stay right).
AMENDABLE_KEYS = ("primary", "verification")


def _hash(definition: dict) -> str:
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()


def _scoring_part(definition: dict) -> dict:
    return {k: v for k, v in definition.items() if k not in AMENDABLE_KEYS}


@transaction.atomic
def load_instruments(
    *,
    definitions: list[dict] | None = None,
    Instrument=Instrument,  # noqa: N803 - the data migration passes its historical models
    InstrumentVersion=InstrumentVersion,  # noqa: N803
) -> list:
    """Load every definition file. Idempotent; a changed file under an existing version is
    refused, because stored responses were scored by the old one — unless only its
    `AMENDABLE_KEYS` changed, which are then updated in place."""
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
            if _scoring_part(version.definition) != _scoring_part(definition):
                raise ValidationError(
                    f"{definition['code']} version {definition['version']} differs from the "
                    "one already loaded. Give the changed file a new version number."
                )
            version.definition = definition
            version.content_hash = digest
            version.save(update_fields=["definition", "content_hash"])
        loaded.append(version)
    return loaded


def latest_version(code: str) -> InstrumentVersion:
    """The highest version of an instrument (by version number, e.g. "1.10" after "1.9")."""
    versions = list(
        InstrumentVersion.objects.select_related("instrument").filter(instrument__code=code)
    )
    if not versions:
        raise ValidationError({"instrument": f"Unknown instrument {code!r}."})
    return max(versions, key=lambda v: scoring.version_key(v.version))


def _as_numbers(answers: dict) -> dict[int, float | None]:
    cleaned, errors = {}, {}
    for key, value in answers.items():
        try:
            cleaned[int(key)] = None if value in (None, "") else float(value)
        except (TypeError, ValueError):
            errors[f"item_{key}"] = f"{value!r} is not a number."
    if errors:
        raise ValidationError(errors)
    return cleaned


def _clean_answers(definition: dict, answers: dict) -> dict[int, float | None]:
    cleaned = _as_numbers(answers)
    errors = scoring.validate_answers(definition, cleaned)
    if errors:
        raise ValidationError({f"item_{item}": message for item, message in errors.items()})
    return cleaned


def unscorable_missing(definition: dict, answers: dict) -> list[int]:
    """The unanswered scored items when the total cannot be scored, else [] (also for
    answers that are invalid: `response_record` reports those)."""
    try:
        cleaned = _as_numbers(answers)
    except ValidationError:
        return []
    if scoring.validate_answers(definition, cleaned):
        return []
    if scoring.score(definition, cleaned).total.value is not None:
        return []
    return [
        item["number"]
        for item in definition["items"]
        if item.get("scored", True) and cleaned.get(item["number"]) is None
    ]


def _score(
    definition: dict,
    answers: dict,
    *,
    allow_incomplete: bool,
    facts: scoring.DefinitionFacts | None = None,
) -> scoring.ScoreResult:
    result = scoring.score(definition, answers, facts=facts)
    if result.total.value is None and not allow_incomplete:
        missing = unscorable_missing(definition, answers)
        raise ValidationError(
            {
                "__all__": ValidationError(
                    "Too many items are unanswered to score this questionnaire "
                    f"(missing: {', '.join(map(str, missing))}). Complete them, or tick "
                    "'save incomplete' to keep the answers without a total.",
                    code="incomplete",
                )
            }
        )
    return result


def _check_administered_at(administered_at: datetime.datetime) -> None:
    if administered_at > timezone.now() + FUTURE_TOLERANCE:
        raise ValidationError({"administered_at": "The answers cannot be dated in the future."})
    if administered_at.date() < dates.EARLIEST:
        raise ValidationError(
            {
                "administered_at": "Check the year: answers cannot be dated before "
                f"{dates.EARLIEST.year}."
            }
        )


def _check_session(session, patient: Patient) -> None:
    if session is not None and not session.attendances.filter(patient=patient).exists():
        raise ValidationError({"session": "This patient was not booked for that session."})


def _check_about_coach(about_coach, patient: Patient) -> None:
    """A rating may name one coach, who is or was assigned to the patient or facilitated one
    of their sessions."""
    from .selectors import coaches_of

    if about_coach is not None and not coaches_of(patient).filter(pk=about_coach.pk).exists():
        raise ValidationError({"about_coach": "Choose one of this patient's coaches."})


def _score_rows(response: Response, result: scoring.ScoreResult) -> list[Score]:
    return [
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
    ]


def _write_scores(response: Response, result: scoring.ScoreResult) -> None:
    response.scores.all().delete()
    Score.objects.bulk_create(_score_rows(response, result))


def _safety(result: scoring.ScoreResult) -> list[dict]:
    return [
        {"item": h.item, "value": h.value, "urgent": h.urgent, "message": h.message}
        for h in result.safety_hits
    ]


def announce_saved(responses: list[Response], *, created: bool) -> None:
    """Tell the apps above, inside the current transaction, that these responses were saved."""
    signals.responses_saved.send(sender=Response, responses=responses, created=created)


def _scores_extras(result: scoring.ScoreResult) -> dict:
    return json.loads(json.dumps(result.extras))  # plain JSON types only


def _response_row(
    *,
    actor,
    patient,
    version,
    cleaned,
    result,
    administered_at,
    source,
    session=None,
    about_coach=None,
    submission_key=None,
) -> Response:
    return Response(
        patient=patient,
        version=version,
        respondent=version.definition["respondent"],
        entered_by=actor if actor is not None and actor.is_authenticated else None,
        source=source,
        administered_at=administered_at,
        session=session,
        about_coach=about_coach,
        submission_key=submission_key,
        complete=result.complete,
        safety_hits=_safety(result),
        has_safety_hit=bool(result.safety_hits),
        safety_unanswered=result.safety_unanswered,
        answers={str(k): v for k, v in sorted(cleaned.items())},
        extras=_scores_extras(result),
    )


SCORE_FIELDS = ["response_id", "scale", "value", "mean", "band", "prorated", "complete"]


@dataclass(frozen=True)
class _Scored:
    """What the scoring engine gives for one set of answers to one version, as stored."""

    complete: bool
    safety_hits: str  # JSON
    has_safety_hit: bool
    safety_unanswered: str  # JSON
    answers: str  # JSON
    extras: str  # JSON
    scores: tuple  # (scale, value, mean, band, prorated, complete) per Score row


def _scored(version: InstrumentVersion, cleaned: dict, facts: scoring.DefinitionFacts) -> _Scored:
    result = _score(version.definition, cleaned, allow_incomplete=True, facts=facts)
    return _Scored(
        complete=result.complete,
        safety_hits=json.dumps(_safety(result)),
        has_safety_hit=bool(result.safety_hits),
        safety_unanswered=json.dumps(result.safety_unanswered),
        answers=json.dumps({str(k): v for k, v in sorted(cleaned.items())}),
        extras=json.dumps(_scores_extras(result)),
        scores=tuple(
            (s.code, s.value, s.mean, s.band or "", s.prorated, s.complete) for s in result.scales
        ),
    )


# Response columns as `responses_bulk_record` writes them; a new column must be added there.
RESPONSE_FIELDS = [
    "id",
    "public_id",
    "patient_id",
    "version_id",
    "respondent",
    "entered_by_id",
    "source",
    "administered_at",
    "session_id",
    "about_coach_id",
    "submission_key",
    "complete",
    "safety_hits",
    "has_safety_hit",
    "safety_unanswered",
    "answers",
    "extras",
    "created_at",
    "updated_at",
]


@transaction.atomic
def responses_bulk_record(*, actor, drafts, batch_size: int = 5000) -> int:
    """Record many questionnaires at database speed, for the demo's bulk seeding: each draft
    is `(patient, version, answers, administered_at, session)`, checked and scored exactly as
    `response_record(allow_incomplete=True)` does, then copied in batches with their Score
    rows, history and audit rows. Nothing is announced: the caller recomputes flags (and so
    raises safety flags) once at the end. Returns how many were recorded.

    Scoring is pure, so each distinct set of answers to a version is scored once and its
    result reused (many short questionnaires repeat at scale). Rows go in as plain tuples with
    ids drawn from the sequence first, so children can name their response."""
    missing = {f.attname for f in Response._meta.concrete_fields} - set(RESPONSE_FIELDS)
    assert not missing, f"responses_bulk_record does not write {sorted(missing)}"
    historical = Response.history.model
    tracked = [f.attname for f in historical.tracked_fields]
    history_fields = [
        *tracked,
        "history_date",
        "history_change_reason",
        "history_type",
        "history_user_id",
    ]
    where = {name: i for i, name in enumerate(RESPONSE_FIELDS)}
    tracked_at = [where[name] for name in tracked]
    actor_id = actor.pk if actor is not None and actor.is_authenticated else None
    now = timezone.now()
    scored: dict[tuple, _Scored] = {}
    # What scoring reads from a definition for every answer, worked out once per version.
    facts: dict[int, scoring.DefinitionFacts] = {}
    # Every response's audit row is its version's but for the response and the patient it
    # names: built once per version, since encoding the same detail 250,000 times showed.
    audited: dict[int, list] = {}
    names_at, patient_at = AUDIT_FIELDS.index("object_id"), AUDIT_FIELDS.index("patient_id")
    recorded = 0
    for first in range(0, len(drafts), batch_size):
        batch = drafts[first : first + batch_size]
        responses, history, scores, audits = [], [], [], []
        for pk, (patient, version, answers, administered_at, session) in zip(
            next_ids(Response, len(batch)), batch, strict=True
        ):
            # The scoring engine validates the answers (an invalid one raises and the whole
            # batch rolls back); validating them once more first would double the seed's time.
            cleaned = _as_numbers(answers)
            _check_administered_at(administered_at)
            key = (version.pk, *sorted(cleaned.items()))
            result = scored.get(key)
            if result is None:
                if version.pk not in facts:
                    facts[version.pk] = scoring.definition_facts(version.definition)
                result = scored[key] = _scored(version, cleaned, facts[version.pk])
            public_id = uuid.uuid4()
            row = (
                pk,
                public_id,
                patient.pk,
                version.pk,
                version.definition["respondent"],
                actor_id,
                Response.Source.CLINIC.value,
                administered_at,
                session.pk if session is not None else None,
                None,
                None,
                result.complete,
                result.safety_hits,
                result.has_safety_hit,
                result.safety_unanswered,
                result.answers,
                result.extras,
                now,
                now,
            )
            responses.append(row)
            # What bulk_create_with_history writes: a "+" row per response, by the actor.
            history.append((*(row[i] for i in tracked_at), now, None, "+", actor_id))
            scores.extend((pk, *score) for score in result.scores)
            audit = audited.get(version.pk)
            if audit is None:
                audit = audited[version.pk] = list(
                    audit_values(
                        at=now,
                        actor=actor,
                        action=AuditEvent.Action.CREATE,
                        object_type=Response._meta.label_lower,
                        detail={
                            "instrument": version.instrument.code,
                            "source": Response.Source.CLINIC.value,
                        },
                    )
                )
            audit[names_at] = str(public_id)
            audit[patient_at] = patient.pk
            audits.append(tuple(audit))
        copy_values(Response, responses, fields=RESPONSE_FIELDS)
        copy_values(historical, history, fields=history_fields)
        copy_values(Score, scores, fields=SCORE_FIELDS)
        copy_values(AuditEvent, audits, fields=AUDIT_FIELDS)
        recorded += len(responses)
    return recorded


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
    announce: bool = True,
) -> Response:
    """Record one questionnaire. With a submission key already used, return that response.

    `announce=False` leaves `responses_saved` to the caller (the importer announces a whole
    file at once).
    """
    if submission_key is not None:
        existing = Response.objects.filter(submission_key=submission_key).first()
        if existing is not None:
            if existing.patient_id != patient.pk:
                raise ValidationError(
                    {"submission_key": "This form was already used for another patient."}
                )
            return existing
    definition = version.definition
    cleaned = _clean_answers(definition, answers)
    _check_administered_at(administered_at)
    _check_session(session, patient)
    _check_about_coach(about_coach, patient)
    result = _score(definition, cleaned, allow_incomplete=allow_incomplete)
    try:
        with transaction.atomic():
            response = _response_row(
                actor=actor,
                patient=patient,
                version=version,
                cleaned=cleaned,
                result=result,
                administered_at=administered_at,
                source=source,
                session=session,
                about_coach=about_coach,
                submission_key=submission_key,
            )
            response.save(force_insert=True)
    except IntegrityError:
        # The same form submitted twice at the same moment: the other request won.
        if submission_key is None:
            raise
        return Response.objects.get(submission_key=submission_key, patient=patient)
    _write_scores(response, result)
    audit_record(
        actor=actor,
        action=AuditEvent.Action.CREATE,
        target=response,
        patient=patient,
        detail={"instrument": version.instrument.code, "source": source},
    )
    if announce:
        announce_saved([response], created=True)
    return response


@transaction.atomic
def response_edit(
    *,
    actor,
    response: Response,
    answers: dict,
    reason: str,
    administered_at: datetime.datetime | None = None,
    allow_incomplete: bool = False,
) -> Response:
    """Correct a response and rescore it. The previous answers, scores' inputs and date stay
    in the response's history (django-simple-history) with the reason."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why the answers are being corrected."})
    response = (
        Response.objects.select_for_update(of=("self",))
        .select_related("version__instrument", "patient")
        .get(pk=response.pk)
    )
    definition = response.version.definition
    cleaned = _clean_answers(definition, answers)
    if administered_at is not None:
        _check_administered_at(administered_at)
        response.administered_at = administered_at
    result = _score(definition, cleaned, allow_incomplete=allow_incomplete)
    previous = response.answers
    response.answers = {str(k): v for k, v in sorted(cleaned.items())}
    response.complete = result.complete
    response.safety_hits = _safety(result)
    response.has_safety_hit = bool(result.safety_hits)
    response.safety_unanswered = result.safety_unanswered
    response.extras = _scores_extras(result)
    response._change_reason = reason
    response.save()
    _write_scores(response, result)
    changed = sorted(
        (
            k
            for k in set(previous) | set(response.answers)
            if previous.get(k) != response.answers.get(k)
        ),
        key=int,
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=response,
        patient=response.patient,
        detail={"reason": reason, "items_changed": changed},
    )
    announce_saved([response], created=False)
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


@transaction.atomic
def record_patient_answers(
    *, patient, session, codes: list[str], answers: dict[str, dict], source: str, keys=None
) -> list[Response]:
    """Record a patient's own answers to several questionnaires (a link's, a kiosk's), all or
    none. Errors are keyed "<code>-<field>" (e.g. "srs-item_2") or
    "<code>"; `keys` maps a code to its submission key where a repeat must find the first."""
    responses, errors = [], {}
    for code in codes:
        version = latest_version(code)
        given = answers.get(code, {})
        missing = unscorable_missing(version.definition, given)
        if missing:
            errors[code] = [
                f"Please answer more of these questions (still empty: "
                f"{', '.join(map(str, missing))})."
            ]
            continue
        try:
            responses.append(
                response_record(
                    actor=None,
                    patient=patient,
                    version=version,
                    answers=given,
                    administered_at=timezone.now(),
                    source=source,
                    session=session,
                    submission_key=(keys or {}).get(code),
                )
            )
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                errors[code if field == "__all__" else f"{code}-{field}"] = messages
    if errors:
        raise ValidationError(errors)  # leaving the transaction undoes the ones recorded
    return responses


def completion_summaries_refresh(*, now: datetime.datetime | None = None) -> int:
    """Count the follow-up completion of every program with a protocol and keep it for the
    program page (`selectors.program_completion`). Beat runs it every five minutes; at 10,000
    patients the largest program takes about a second, the page a few milliseconds to read it.
    Returns the number of programs counted."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    counted = 0
    for program in Program.objects.filter(protocol__isnull=False).select_related("protocol"):
        rows = selectors.completion_by_time_point(program=program, today=today)
        CompletionSummary.objects.update_or_create(
            program=program,
            defaults={
                "counted_for": today,
                "counted_at": now,
                "schedule": program.protocol.measurement_schedule or [],
                "rows": rows,
            },
        )
        counted += 1
    return counted
