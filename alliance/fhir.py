"""FHIR R4 (R4B models) Questionnaire, QuestionnaireResponse and score Observation resources,
and the dosing days' vital signs as Observations with LOINC codes, as a Bundle.

Written entry by entry to a file (a worker builds it: `alliance.fhir_exports`), so memory stays
flat however large the clinic. Each resource is validated with fhir.resources before it is
written, so a malformed export is an error here rather than a surprise in someone else's
system. De-identified by default: the subject is
the stable pseudonym and responses carry no dates.
"""

import json
from collections.abc import Iterator
from typing import BinaryIO

from fhir.resources.R4B import get_fhir_model_class

from outcomes import scoring
from outcomes.models import InstrumentVersion, Response
from sessions.models import VitalSigns

from .exports import pseudonym

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


def _answer(definition: dict, number: int, value) -> dict:
    item = next(i for i in definition["items"] if i["number"] == number)
    if _scale(definition, item)["kind"] == "vas":
        return {"valueDecimal": value}
    return {"valueCoding": {"code": str(int(value))}}


def _subject(response: Response, *, identified: bool) -> dict:
    if identified:
        return {"display": response.patient.record_number}
    return {"identifier": {"system": f"{BASE}/pseudonym", "value": pseudonym(response.patient)}}


def questionnaire_response(response: Response, *, identified: bool) -> dict:
    definition = response.version.definition
    subject = _subject(response, identified=identified)
    resource = {
        "resourceType": "QuestionnaireResponse",
        "id": str(response.public_id),
        "questionnaire": f"{_canonical(response.version)}|{response.version.version}",
        "status": "completed" if response.complete else "in-progress",
        "subject": subject,
        "item": [
            {"linkId": number, "answer": [_answer(definition, int(number), value)]}
            for number, value in response.answers.items()
            if value is not None
        ],
    }
    if identified:
        resource["authored"] = response.administered_at.isoformat()
    return resource


def _score_text(response: Response, primary: scoring.PrimaryScore) -> str:
    """ "PHQ-9 total (sum)", "WAI-SR bond (mean)", "MEQ-30 mystical (% of max)"."""
    return f"{response.version.instrument.short_name} {primary.name.lower()} ({primary.label})"


def _scored(response: Response, primary: scoring.PrimaryScore) -> dict:
    part = {
        "code": {"text": _score_text(response, primary)},
        "valueQuantity": {"value": primary.value, "unit": primary.label},
    }
    if primary.band:
        part["interpretation"] = [{"text": primary.band}]
    return part


def score_observation(response: Response, *, identified: bool) -> dict | None:
    """The scores as clinicians read them, derived from the QuestionnaireResponse: the
    instrument's primary score (PHQ-9 sum, WAI-SR mean, MEQ-30 % of max) with its band, the
    other scales as components. None when the headline could not be scored."""
    primary = response.primary
    if primary.value is None:
        return None
    resource = {
        "resourceType": "Observation",
        "id": f"{response.public_id}-score",
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey"}]}],
        "subject": _subject(response, identified=identified),
        "derivedFrom": [{"reference": f"QuestionnaireResponse/{response.public_id}"}],
        **_scored(response, primary),
    }
    if primary.prorated:
        resource["note"] = [{"text": "Prorated: some items were unanswered."}]
    components = [
        _scored(response, p)
        for p in response.primary_scores
        if p.scale != primary.scale and p.value is not None
    ]
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


def _vitals_subject(vitals: VitalSigns, *, identified: bool) -> dict:
    if identified:
        return {"display": vitals.patient.record_number}
    return {"identifier": {"system": f"{BASE}/pseudonym", "value": pseudonym(vitals.patient)}}


def vital_sign_observations(vitals: VitalSigns, *, identified: bool) -> list[dict]:
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
        "subject": _vitals_subject(vitals, identified=identified),
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
CHUNK_ROWS = 500
PROGRESS_EVERY = 500


def entry_count(*, patients) -> int:
    """How many entries `write_bundle` will write (for progress): one Questionnaire per
    version used, a QuestionnaireResponse per response plus its score Observation (an upper
    bound: an unscorable response has none), and up to five vital-sign Observations each."""
    responses = Response.objects.filter(patient__in=patients)
    versions = responses.values("version_id").distinct().count()
    vitals = VitalSigns.objects.filter(patient__in=patients).count()
    return versions + 2 * responses.count() + 5 * vitals


def resources(*, patients, identified: bool = False) -> Iterator[dict]:
    """Every resource of the export, one at a time: Questionnaires first, then each response
    with its score Observation, then vital signs. Instrument definitions (2-5 kB each) are
    read once, not once per response."""
    version_ids = Response.objects.filter(patient__in=patients).values("version_id").distinct()
    versions = {
        v.pk: v
        for v in InstrumentVersion.objects.filter(pk__in=version_ids)
        .select_related("instrument")
        .order_by("instrument__code", "version")
    }
    for version in versions.values():
        yield questionnaire(version)
    responses = (
        Response.objects.filter(patient__in=patients)
        .select_related("patient")
        .prefetch_related("scores")
        .order_by("administered_at", "id")
    )
    for response in responses.iterator(chunk_size=CHUNK_ROWS):
        response.version = versions[response.version_id]
        yield questionnaire_response(response, identified=identified)
        observation = score_observation(response, identified=identified)
        # Prefetched scores point back at their response: a reference cycle that only the
        # garbage collector's rare full passes would free, so memory would grow with the
        # export. Dropping the cache frees each response as soon as it is written.
        response._prefetched_objects_cache = {}
        if observation is not None:
            yield observation
    vitals_rows = (
        VitalSigns.objects.filter(patient__in=patients)
        .select_related("patient")
        .order_by("measured_at", "id")
    )
    for vitals in vitals_rows.iterator(chunk_size=CHUNK_ROWS):
        yield from vital_sign_observations(vitals, identified=identified)


def validated(resource: dict) -> dict:
    """The resource, once fhir.resources accepts it as FHIR R4; raises otherwise."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


def write_bundle(out: BinaryIO, *, patients, identified: bool = False, progress=None) -> int:
    """Write a FHIR R4 collection Bundle to `out` entry by entry, each resource validated
    before it is written, and return how many entries it holds. `progress(entries)` is called
    every PROGRESS_EVERY entries. Nothing but the current chunk is held in memory."""
    out.write(b'{"resourceType":"Bundle","type":"collection","entry":[')
    written = 0
    for resource in resources(patients=patients, identified=identified):
        if written:
            out.write(b",\n")
        out.write(json.dumps({"resource": validated(resource)}).encode())
        written += 1
        if progress is not None and written % PROGRESS_EVERY == 0:
            progress(written)
    out.write(b"]}\n")
    return written
