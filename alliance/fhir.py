"""FHIR R4 (R4B models) Questionnaire, QuestionnaireResponse and score Observation resources,
and the dosing days' vital signs as Observations with LOINC codes, as a Bundle.

Written entry by entry to a file (a worker builds it: `alliance.fhir_exports`), so memory stays
flat however large the clinic. Every resource is checked before it is written, so a malformed
export is an error here rather than a surprise in someone else's system: fhir.resources
validates the first resource of each shape in full, and every later resource is reduced to
its shape and passes only if that shape was validated (`ShapeValidator`).
De-identified by default: the subject is the stable pseudonym and responses carry no dates.
"""

import dataclasses
import datetime
import functools
import math
import re
from collections.abc import Iterator
from typing import BinaryIO

import orjson
from fhir.resources.R4B import get_fhir_model_class
from fhir_core import types as _types
from fhir_core.constraints import TYPES_ID_MAX_LENGTH

from outcomes import scoring
from outcomes.models import InstrumentVersion, Response, Score
from sessions.models import VitalSigns

from .exports import pseudonym_of

BASE = "https://rapport.invalid/fhir"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _canonical(version: InstrumentVersion) -> str:
    return f"{BASE}/Questionnaire/{version.instrument.code}"


def _scale(definition: dict, item: dict) -> dict:
    return {**definition["scale"], **item.get("scale", {})}


def questionnaire(version: InstrumentVersion) -> dict:
    definition = version.definition
    items = []
    for item in definition["items"]:
        scale = _scale(definition, item)
        entry = {"linkId": str(item["number"]), "text": item["label"]}
        if scale["kind"] == "vas":
            entry["type"] = "decimal"
        else:
            labels = scale.get("labels", {})
            entry["type"] = "choice"
            entry["answerOption"] = [
                {"valueCoding": {"code": str(value), "display": labels.get(str(value), str(value))}}
                for value in range(int(scale["min"]), int(scale["max"]) + 1)
            ]
        items.append(entry)
    return {
        "resourceType": "Questionnaire",
        "id": f"{version.instrument.code}-{version.version}",
        "url": _canonical(version),
        "version": version.version,
        "name": version.instrument.code.replace("-", "_").upper(),
        "title": definition["name"],
        "status": "active",
        "item": items,
    }


class _Instrument:
    """What every response to one instrument version shares, worked out once per export
    rather than once per response: the canonical reference, which items are VAS (decimal
    answers), and the text of each scale's score."""

    def __init__(self, version: InstrumentVersion):
        definition = version.definition
        self.definition = definition
        self.reference = f"{_canonical(version)}|{version.version}"
        self.vas = {
            item["number"]: _scale(definition, item)["kind"] == "vas"
            for item in definition["items"]
        }
        self.scales = ["total", *(sub["code"] for sub in definition["subscales"])]
        self.short_name = version.instrument.short_name


@dataclasses.dataclass(frozen=True, slots=True)
class _StoredScore:
    """A Score row's fields that the scoring engine reads (`scoring.primary_score`)."""

    value: float | None
    mean: float | None
    band: str
    prorated: bool


@dataclasses.dataclass(frozen=True, slots=True)
class _Response:
    """One response row as the export reads it: plain values, no model instance."""

    public_id: object
    instrument: _Instrument
    complete: bool
    answers: dict
    extras: dict
    administered_at: datetime.datetime
    subject: dict
    scores: dict


def _answer(instrument: _Instrument, number: int, value) -> dict:
    if instrument.vas[number]:
        return {"valueDecimal": value}
    return {"valueCoding": {"code": str(int(value))}}


def _subject_of(public_id, record_number: str, *, identified: bool) -> dict:
    if identified:
        return {"display": record_number}
    return {"identifier": {"system": f"{BASE}/pseudonym", "value": pseudonym_of(public_id)}}


def questionnaire_response(response: _Response, *, identified: bool) -> dict:
    instrument = response.instrument
    resource = {
        "resourceType": "QuestionnaireResponse",
        "id": str(response.public_id),
        "questionnaire": instrument.reference,
        "status": "completed" if response.complete else "in-progress",
        "subject": response.subject,
        "item": [
            {"linkId": number, "answer": [_answer(instrument, int(number), value)]}
            for number, value in response.answers.items()
            if value is not None
        ],
    }
    if identified:
        resource["authored"] = response.administered_at.isoformat()
    return resource


def _scored(response: _Response, primary: scoring.PrimaryScore) -> dict:
    # "PHQ-9 total (sum)", "WAI-SR bond (mean)", "MEQ-30 mystical (% of max)"
    text = f"{response.instrument.short_name} {primary.name.lower()} ({primary.label})"
    part = {
        "code": {"text": text},
        "valueQuantity": {"value": primary.value, "unit": primary.label},
    }
    if primary.band:
        part["interpretation"] = [{"text": primary.band}]
    return part


def score_observation(response: _Response, *, identified: bool) -> dict | None:
    """The scores as clinicians read them, derived from the QuestionnaireResponse: the
    instrument's primary score (PHQ-9 sum, WAI-SR mean, MEQ-30 % of max) with its band, the
    other scales as components. None when the headline could not be scored."""
    definition = response.instrument.definition
    primary = scoring.primary_score(definition, response.scores, response.extras)
    if primary.value is None:
        return None
    resource = {
        "resourceType": "Observation",
        "id": f"{response.public_id}-score",
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey"}]}],
        "subject": response.subject,
        "derivedFrom": [{"reference": f"QuestionnaireResponse/{response.public_id}"}],
        **_scored(response, primary),
    }
    if primary.prorated:
        resource["note"] = [{"text": "Prorated: some items were unanswered."}]
    components = []
    for scale in response.instrument.scales:
        if scale == primary.scale:
            continue
        part = scoring.primary_score(definition, response.scores, response.extras, scale=scale)
        if part.value is not None:
            components.append(_scored(response, part))
    if components:
        resource["component"] = components
    if identified:
        resource["effectiveDateTime"] = response.administered_at.isoformat()
    return resource


LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
# (LOINC code, display, field, UCUM unit); blood pressure is one panel with two components.
VITAL_CODES = [
    ("8867-4", "Heart rate", "heart_rate", "/min"),
    ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "spo2", "%"),
    ("9279-1", "Respiratory rate", "respiratory_rate", "/min"),
    ("8310-5", "Body temperature", "temperature_c", "Cel"),
]
BP_PANEL = ("85354-9", "Blood pressure panel with all children optional")
BP_PARTS = [
    ("8480-6", "Systolic blood pressure", "systolic"),
    ("8462-4", "Diastolic blood pressure", "diastolic"),
]


def _loinc(code: str, display: str) -> dict:
    return {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display}


def _quantity(value, unit: str) -> dict:
    return {"value": float(value), "unit": unit, "system": UCUM, "code": unit}


def vital_sign_observations(vitals: VitalSigns, *, subject: dict, identified: bool) -> list[dict]:
    """One reading as FHIR vital-signs Observations: a blood-pressure panel (systolic and
    diastolic components), heart rate, SpO2 and, when taken, respiratory rate and
    temperature. De-identified: pseudonymous subject and no dates."""
    common = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": OBSERVATION_CATEGORY,
                        "code": "vital-signs",
                        "display": "Vital Signs",
                    }
                ]
            }
        ],
        "subject": subject,
    }
    if identified:
        common["effectiveDateTime"] = vitals.measured_at.isoformat()
        common["issued"] = vitals.entered_at.isoformat()
    observations = [
        {
            **common,
            "id": f"{vitals.public_id}-bp",
            "code": _loinc(*BP_PANEL),
            "component": [
                {
                    "code": _loinc(code, display),
                    "valueQuantity": _quantity(getattr(vitals, name), "mm[Hg]"),
                }
                for code, display, name in BP_PARTS
            ],
        }
    ]
    for code, display, name, unit in VITAL_CODES:
        value = getattr(vitals, name)
        if value is None:
            continue
        observations.append(
            {
                **common,
                "id": f"{vitals.public_id}-{code}",
                "code": _loinc(code, display),
                "valueQuantity": _quantity(value, unit),
            }
        )
    return observations


# Rows fetched per round trip from the server-side cursor, and entries between two progress
# reports: memory holds one chunk, whatever the size of the clinic.
CHUNK_ROWS = 2000
PROGRESS_EVERY = 500


def entry_count(*, patients) -> int:
    """How many entries `write_bundle` will write (for progress): one Questionnaire per
    version used, a QuestionnaireResponse per response plus its score Observation (an upper
    bound: an unscorable response has none), and up to five vital-sign Observations each."""
    responses = Response.objects.filter(patient__in=patients)
    versions = responses.values("version_id").distinct().count()
    vitals = VitalSigns.objects.filter(patient__in=patients).count()
    return versions + 2 * responses.count() + 5 * vitals


def _chunks(rows: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _responses(*, patients, instruments: dict, subject) -> Iterator[_Response]:
    """Each response with its stored scores, in the export's order, read as plain values
    (a chunk of responses, then one query for that chunk's scores): building model instances
    cost more than writing the bundle."""
    rows = (
        Response.objects.filter(patient__in=patients)
        .order_by("administered_at", "id")
        .values_list(
            "id",
            "public_id",
            "version_id",
            "complete",
            "answers",
            "extras",
            "administered_at",
            "patient__public_id",
            "patient__record_number",
        )
    )
    for chunk in _chunks(rows.iterator(chunk_size=CHUNK_ROWS), CHUNK_ROWS):
        scores = {row[0]: {} for row in chunk}
        for response_id, scale, value, mean, band, prorated in Score.objects.filter(
            response_id__in=list(scores)
        ).values_list("response_id", "scale", "value", "mean", "band", "prorated"):
            scores[response_id][scale] = _StoredScore(value, mean, band, prorated)
        for pk, public_id, version_id, complete, answers, extras, when, patient, record in chunk:
            yield _Response(
                public_id=public_id,
                instrument=instruments[version_id],
                complete=complete,
                answers=answers,
                extras=extras,
                administered_at=when,
                subject=subject(patient, record),
                scores=scores[pk],
            )


def resources(*, patients, identified: bool = False) -> Iterator[dict]:
    """Every resource of the export, one at a time: Questionnaires first, then each response
    with its score Observation, then vital signs. Instrument definitions (2-5 kB each) are
    read once, not once per response."""
    version_ids = Response.objects.filter(patient__in=patients).values("version_id").distinct()
    versions = (
        InstrumentVersion.objects.filter(pk__in=version_ids)
        .select_related("instrument")
        .order_by("instrument__code", "version")
    )
    instruments = {}
    for version in versions:
        instruments[version.pk] = _Instrument(version)
        yield questionnaire(version)

    # The pseudonym is an HMAC: worked out once per patient while that patient recurs, in a
    # cache of bounded size, so memory does not grow with the number of patients either.
    @functools.lru_cache(maxsize=4096)
    def subject(public_id, record_number: str) -> dict:
        return _subject_of(public_id, record_number, identified=identified)

    for response in _responses(patients=patients, instruments=instruments, subject=subject):
        yield questionnaire_response(response, identified=identified)
        observation = score_observation(response, identified=identified)
        if observation is not None:
            yield observation
    vitals_rows = (
        VitalSigns.objects.filter(patient__in=patients)
        .select_related("patient")
        .order_by("measured_at", "id")
    )
    for vitals in vitals_rows.iterator(chunk_size=CHUNK_ROWS):
        yield from vital_sign_observations(
            vitals,
            subject=subject(vitals.patient.public_id, vitals.patient.record_number),
            identified=identified,
        )


# Validating a resource with fhir.resources costs about a millisecond, most of the export's
# time. Whether it passes depends on its shape, not its particular values: which elements it
# has, how many of each (none, one, several) and, for each value, its JSON type and which
# FHIR primitive patterns it matches (id, code, date, dateTime, instant, time; non-empty; a
# finite decimal; an integer's sign and range). So each resource is reduced to that shape,
# and fhir.resources validates the first resource of every shape in full; a later resource
# of a shape already validated passes by the same checks. A value no earlier resource had
# the like of (an empty text, NaN, a malformed date) makes a new shape and is validated.
# (The FHIR `url` type, which fhir.resources parses as a URL, would need a class of its own;
# this export writes no element of that type.)
_ID = re.compile(rf"[A-Za-z0-9\-.]{{1,{TYPES_ID_MAX_LENGTH}}}")
_CODE = re.compile(r"[^\s]+(\s[^\s]+)*")
_WHITESPACE = re.compile(r"\s")
_INT32 = range(-(2**31), 2**31)


@functools.lru_cache(maxsize=8192)
def _string_shape(value: str) -> tuple:
    dated = False
    if _types.DateTime.pattern.fullmatch(value) or _types.Instant.pattern.fullmatch(value):
        try:  # the patterns allow 2026-02-30; fhir.resources parses the date too
            datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            dated = True
        except ValueError:
            # A year or year-month has no day to check; anything else Python cannot read is
            # its own shape, so fhir.resources validates each such value.
            dated = True if len(value) < 10 else value
    return (
        "str",
        bool(value),
        bool(_ID.fullmatch(value)),
        bool(_CODE.fullmatch(value)),
        bool(_WHITESPACE.search(value)),
        bool(_types.Date.pattern.fullmatch(value)),
        bool(_types.DateTime.pattern.fullmatch(value)),
        bool(_types.Instant.pattern.fullmatch(value)),
        bool(_types.Time.pattern.fullmatch(value)),
        dated,
    )


def _shape(value) -> tuple | str:
    # Called for every element of every resource: the commonest kinds come first, and list
    # comprehensions (not generators) keep it to a few hundred nanoseconds an element.
    kind = type(value)
    if kind is str:
        return _string_shape(value)
    if kind is dict:
        return tuple([(key, _shape(element)) for key, element in value.items()])
    if kind is list:
        return ("list", min(len(value), 2), frozenset([_shape(element) for element in value]))
    if kind is float:
        return "float" if math.isfinite(value) else "float, not finite"
    if kind is int:
        return ("int", (value > 0) - (value < 0), value in _INT32)
    return kind.__name__  # bool, None, or anything else orjson accepts


class ShapeValidator:
    """Validates each resource of one export with fhir.resources, once per shape (above).
    Holds one entry per shape seen: a few hundred at most, whatever the export's size."""

    def __init__(self):
        self.validated: set = set()

    def __call__(self, resource: dict) -> dict:
        shape = _shape(resource)
        if shape not in self.validated:
            validated(resource)
            self.validated.add(shape)
        return resource


def validated(resource: dict) -> dict:
    """The resource, once fhir.resources accepts it as FHIR R4; raises otherwise."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


def write_bundle(out: BinaryIO, *, patients, identified: bool = False, progress=None) -> int:
    """Write a FHIR R4 collection Bundle to `out` entry by entry, each resource validated
    (by shape: `ShapeValidator`) before it is written, and return how many entries it holds.
    `progress(entries)` is called every PROGRESS_EVERY entries. Nothing but the current chunk
    is held in memory."""
    check = ShapeValidator()
    out.write(b'{"resourceType":"Bundle","type":"collection","entry":[')
    written = 0
    for resource in resources(patients=patients, identified=identified):
        if written:
            out.write(b",\n")
        # orjson: a quarter of the time json.dumps took. Same JSON content, more compact
        # (no spaces, UTF-8 rather than \u escapes).
        out.write(orjson.dumps({"resource": check(resource)}))
        written += 1
        if progress is not None and written % PROGRESS_EVERY == 0:
            progress(written)
    out.write(b"]}\n")
    return written
