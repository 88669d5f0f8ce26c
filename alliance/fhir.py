"""FHIR R4 (R4B models) Questionnaire and QuestionnaireResponse resources as a Bundle.

Validated with fhir.resources before it leaves the clinic, so a malformed export is an error
here rather than a surprise in someone else's system. De-identified by default: the subject is
the stable pseudonym and responses carry no dates.
"""

from fhir.resources.R4B.bundle import Bundle

from outcomes.models import InstrumentVersion, Response

from .exports import pseudonym

BASE = "https://rapport.invalid/fhir"


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


def questionnaire_response(response: Response, *, identified: bool) -> dict:
    definition = response.version.definition
    subject = (
        {"display": response.patient.record_number}
        if identified
        else {"identifier": {"system": f"{BASE}/pseudonym", "value": pseudonym(response.patient)}}
    )
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


def bundle(*, patients, identified: bool = False) -> dict:
    responses = list(
        Response.objects.filter(patient__in=patients)
        .select_related("patient", "version__instrument")
        .order_by("administered_at", "id")
    )
    versions = {r.version_id: r.version for r in responses}
    entries = [{"resource": questionnaire(v)} for v in versions.values()]
    entries += [{"resource": questionnaire_response(r, identified=identified)} for r in responses]
    data = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    Bundle.model_validate(data)  # raises on anything FHIR R4 would not accept
    return data
