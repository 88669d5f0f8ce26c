"""FHIR R4 (R4B models) Questionnaire, QuestionnaireResponse and score Observation resources,
and the dosing days' vital signs as Observations with LOINC codes, as a Bundle.

Validated with fhir.resources before it leaves the clinic, so a malformed export is an error
here rather than a surprise in someone else's system. De-identified by default: the subject is
the stable pseudonym and responses carry no dates.
"""

from fhir.resources.R4B.bundle import Bundle

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


def bundle(*, patients, identified: bool = False) -> dict:
    responses = list(
        Response.objects.filter(patient__in=patients)
        .select_related("patient", "version__instrument")
        .prefetch_related("scores")
        .order_by("administered_at", "id")
    )
    versions = {r.version_id: r.version for r in responses}
    entries = [{"resource": questionnaire(v)} for v in versions.values()]
    for response in responses:
        entries.append({"resource": questionnaire_response(response, identified=identified)})
        observation = score_observation(response, identified=identified)
        if observation is not None:
            entries.append({"resource": observation})
    for vitals in (
        VitalSigns.objects.filter(patient__in=patients)
        .select_related("patient")
        .order_by("measured_at", "id")
    ):
        entries.extend(
            {"resource": observation}
            for observation in vital_sign_observations(vitals, identified=identified)
        )
    data = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    Bundle.model_validate(data)  # raises on anything FHIR R4 would not accept
    return data
