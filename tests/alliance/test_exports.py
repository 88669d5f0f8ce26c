import csv
import datetime
import io
import zoneinfo

import pytest
from django.core.management import call_command
from django.urls import reverse

from alliance.exports import pseudonym
from clinic.models import AuditEvent
from outcomes import services as outcome_services

LONDON = zoneinfo.ZoneInfo("Europe/London")

pytestmark = pytest.mark.django_db


def _rows(body: bytes | str) -> list[dict]:
    text = body.decode() if isinstance(body, bytes) else body
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def rated(people, rate):
    rate(bond=2, days_ago=2)
    rate(bond=4, days_ago=1)
    return people


def test_long_export_is_de_identified_by_default_and_audited(client, rated):
    client.force_login(rated.clinician)
    response = client.post(reverse("export"), {"form": "long"})
    assert response["Content-Type"].startswith("text/csv")
    body = response.content.decode()
    rows = _rows(body)
    assert len(rows) == 2 * 4  # two WAI-SR responses x total, bond, goal, task
    assert {r["patient"] for r in rows} == {pseudonym(rated.patient)}
    assert rated.patient.last_name not in body and rated.patient.record_number not in body
    assert "date" not in rows[0] and rows[0]["day"] != ""
    bond = [r for r in rows if r["scale"] == "bond"]
    assert [float(r["mean"]) for r in bond] == [2.0, 4.0]
    event = AuditEvent.objects.get(action="export")
    assert event.actor == rated.clinician and event.detail["identified"] is False


def test_a_rating_just_after_midnight_is_dated_by_the_clinics_calendar(client, people):
    # 00:30 in London on 25 October 2026 is still 24 October in UTC (summer time ends at 02:00).
    people.enrolment.start_date = datetime.date(2026, 10, 18)
    people.enrolment.save()
    outcome_services.response_record(
        actor=people.coach,
        patient=people.patient,
        version=outcome_services.latest_version("wai-sr"),
        answers={n: 4 for n in range(1, 13)},
        administered_at=datetime.datetime(2026, 10, 25, 0, 30, tzinfo=LONDON),
    )
    client.force_login(people.admin)
    rows = _rows(
        client.post(
            reverse("export"), {"form": "long", "identified": "on", "reason": "Audit"}
        ).content
    )
    assert {(r["date"], r["day"]) for r in rows} == {("2026-10-25", "7")}


def test_wide_export_has_one_row_per_time_point(client, rated):
    client.force_login(rated.clinician)
    rows = _rows(client.post(reverse("export"), {"form": "wide"}).content)
    assert len(rows) == 2
    assert [float(r["wai-sr_bond"]) for r in rows] == [2.0, 4.0]


def test_identified_export_is_for_admins_with_a_reason(client, rated):
    client.force_login(rated.clinician)
    page = client.get(reverse("export")).content.decode()
    assert 'name="identified"' not in page
    client.force_login(rated.admin)
    refused = client.post(reverse("export"), {"form": "long", "identified": "on", "reason": ""})
    assert "Say why identified data is needed." in refused.content.decode()
    ok = client.post(
        reverse("export"), {"form": "long", "identified": "on", "reason": "Audit request 12"}
    )
    rows = _rows(ok.content)
    assert rows[0]["record_number"] == rated.patient.record_number
    assert AuditEvent.objects.get(action="export").detail["reason"] == "Audit request 12"


def test_coaches_cannot_export(client, people):
    client.force_login(people.coach)
    assert client.get(reverse("export")).status_code == 403


def test_the_shell_command_writes_the_same_csv(tmp_path, rated):
    out = tmp_path / "scores.csv"
    call_command("export_responses", "--out", str(out), stdout=io.StringIO())
    rows = _rows(out.read_text())
    assert len(rows) == 8 and rows[0]["patient"] == pseudonym(rated.patient)


def test_fhir_bundle_validates_and_is_de_identified(tmp_path, rated, rate):
    from fhir.resources.R4B.bundle import Bundle

    srs = {1: 8.5, 2: 9, 3: 9.5, 4: 9}
    rate(bond=None, code="srs", answers=srs)
    out = tmp_path / "bundle.json"
    call_command("export_responses", "--format", "fhir", "--out", str(out), stdout=io.StringIO())
    bundle = Bundle.model_validate_json(out.read_text())
    kinds = [entry.resource.__resource_type__ for entry in bundle.entry]
    assert kinds.count("Questionnaire") == 2  # WAI-SR and SRS
    assert kinds.count("QuestionnaireResponse") == 3
    text = out.read_text()
    assert rated.patient.last_name not in text and rated.patient.record_number not in text
    assert pseudonym(rated.patient) in text and '"authored"' not in text
    srs_response = next(
        e.resource
        for e in bundle.entry
        if "srs" in (getattr(e.resource, "questionnaire", "") or "")
    )
    assert srs_response.item[0].answer[0].valueDecimal == 8.5
    assert AuditEvent.objects.get(action="export").object_id == "fhir"


def test_the_exports_page_downloads_a_validated_fhir_bundle(client, rated):
    from fhir.resources.R4B.bundle import Bundle

    client.force_login(rated.clinician)
    response = client.post(reverse("export"), {"form": "fhir"})
    assert response["Content-Type"].startswith("application/fhir+json")
    assert response["Content-Disposition"].endswith('.json"')
    bundle = Bundle.model_validate_json(response.content)
    kinds = [entry.resource.__resource_type__ for entry in bundle.entry]
    assert kinds.count("QuestionnaireResponse") == 2
    assert rated.patient.last_name.encode() not in response.content
    event = AuditEvent.objects.get(action="export")
    assert (event.actor, event.object_id) == (rated.clinician, "fhir")


def test_the_exports_page_runs_a_constant_number_of_queries(
    client, rated, rate, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(rated.clinician)
    for form in ("long", "wide", "fhir"):
        with CaptureQueriesContext(connection) as small:
            client.post(reverse("export"), {"form": form})
        for days_ago in range(3, 13):
            rate(bond=3, days_ago=days_ago)
        with django_assert_max_num_queries(len(small.captured_queries)):
            assert client.post(reverse("export"), {"form": form}).status_code == 200
