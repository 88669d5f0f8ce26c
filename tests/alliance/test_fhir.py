"""The FHIR bundle's resources: every entry valid FHIR R4, though the export validates each
shape only once."""

import datetime
import io
import json
import uuid

import pytest
from django.utils import timezone
from pydantic import ValidationError

from alliance import fhir
from clinic.models import Patient
from outcomes import services as outcome_services
from outcomes.models import InstrumentVersion
from sessions import services as session_services

pytestmark = pytest.mark.django_db


def _answers(definition: dict, *, first_only: bool = False) -> dict:
    """Each item at its scale's top, or only the first item (an incomplete response)."""
    answers = {}
    for item in definition["items"]:
        scale = {**definition["scale"], **item.get("scale", {})}
        answers[item["number"]] = scale["max"]
        if first_only:
            break
    return answers


@pytest.fixture
def test_clinic(people, ketamine_dosing):
    """Every instrument the clinic has, answered in full and in part, and vital signs with
    and without the optional readings."""
    now = timezone.now()
    for version in InstrumentVersion.objects.select_related("instrument"):
        for minutes, first_only in ((30, False), (20, True)):
            outcome_services.response_record(
                actor=people.coach,
                patient=people.patient,
                version=version,
                answers=_answers(version.definition, first_only=first_only),
                administered_at=now - datetime.timedelta(minutes=minutes),
                allow_incomplete=first_only,
            )
    dosing = ketamine_dosing(60)
    for point, extra in (
        ("pre_dose", {"respiratory_rate": 14, "temperature_c": 36.8}),
        ("plus_40", {}),
    ):
        session_services.vitals_record(
            actor=people.coach,
            session=dosing,
            token=uuid.uuid4(),
            point=point,
            measured_at=now,
            **{"systolic": 128, "diastolic": 82, "heart_rate": 74, "spo2": 98, **extra},
        )
    return people


@pytest.mark.parametrize("identified", [False, True])
def test_every_entry_of_a_test_clinic_is_valid_fhir(test_clinic, identified):
    out = io.BytesIO()
    written = fhir.write_bundle(out, patients=Patient.objects.all(), identified=identified)
    entries = json.loads(out.getvalue())["entry"]
    assert written == len(entries)
    for entry in entries:  # each one in full, not by shape
        fhir.validated(entry["resource"])
    kinds = [entry["resource"]["resourceType"] for entry in entries]
    versions = InstrumentVersion.objects.count()
    assert kinds.count("Questionnaire") == versions
    assert kinds.count("QuestionnaireResponse") == 2 * versions
    statuses = {e["resource"].get("status") for e in entries}
    assert {"completed", "in-progress"} <= statuses
    assert any("valueDecimal" in str(e["resource"].get("item")) for e in entries)
    assert (
        sum(
            e["resource"].get("category", [{}])[0].get("coding", [{}])[0].get("code")
            == "vital-signs"
            for e in entries
        )
        == 5 + 3
    )  # a full reading and one without respiratory rate and temperature


def _response(**changes) -> dict:
    resource = {
        "resourceType": "QuestionnaireResponse",
        "id": str(uuid.uuid4()),
        "questionnaire": f"{fhir.BASE}/Questionnaire/phq-9|1",
        "status": "completed",
        "subject": {"identifier": {"system": f"{fhir.BASE}/pseudonym", "value": "P-0123456789ab"}},
        "item": [
            {"linkId": "1", "answer": [{"valueCoding": {"code": "2"}}]},
            {"linkId": "2", "answer": [{"valueDecimal": 4.5}]},
        ],
        "authored": "2026-11-27T10:30:00+00:00",
    }
    resource.update(changes)
    return resource


def test_a_resource_of_a_shape_seen_before_passes_without_validating_again(monkeypatch):
    check = fhir.ShapeValidator()
    check(_response())
    validations = []
    monkeypatch.setattr(fhir, "validated", validations.append)
    check(_response(id=str(uuid.uuid4()), authored="2025-01-02T03:04:05.678901-05:00"))
    check(
        _response(
            item=[
                {"linkId": "7", "answer": [{"valueCoding": {"code": "3"}}]},
                {"linkId": "8", "answer": [{"valueDecimal": 80.25}]},
                {"linkId": "9", "answer": [{"valueCoding": {"code": "0"}}]},
            ]
        )
    )
    assert validations == []


@pytest.mark.parametrize(
    "bad",
    [
        {"id": "not an id"},
        {"id": "x" * 256},
        {"status": ""},
        {"status": "in  progress"},
        {"item": [{"linkId": "1", "answer": [{"valueCoding": {"code": " 2"}}]}]},
        {"item": [{"linkId": "1", "answer": [{"valueDecimal": float("nan")}]}]},
        {"item": [{"linkId": "", "answer": [{"valueDecimal": 1.0}]}]},
        {"item": [{"answer": [{"valueDecimal": 1.0}]}]},
        {"authored": "2026-02-30T10:30:00+00:00"},
        {"authored": "2026-11-27T10:30:00"},
        {"subject": {"display": ""}},
        {"subject": {"identifier": {"value": 7}}},
        {"bond": 3},
    ],
)
def test_a_bad_value_in_a_shape_already_validated_is_refused(bad):
    check = fhir.ShapeValidator()
    check(_response())
    with pytest.raises(ValidationError):
        check(_response(**bad))
