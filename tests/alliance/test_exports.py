import csv
import datetime
import hashlib
import hmac
import io
import uuid
import zoneinfo

import pytest
import time_machine
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from alliance import exports
from alliance.exports import pseudonym
from clinic.models import AuditEvent, Patient
from outcomes import services as outcome_services
from tests.factories import EnrolmentFactory

LONDON = zoneinfo.ZoneInfo("Europe/London")

pytestmark = pytest.mark.django_db


def _rows(body: bytes | str) -> list[dict]:
    text = body.decode() if isinstance(body, bytes) else body
    return list(csv.DictReader(io.StringIO(text)))


def _body(response) -> bytes:
    assert response.streaming  # a CSV export streams
    return b"".join(response.streaming_content)


@pytest.fixture
def rated(people, rate):
    rate(bond=2, days_ago=2)
    rate(bond=4, days_ago=1)
    return people


def test_long_export_is_de_identified_by_default_and_audited(client, rated):
    client.force_login(rated.clinician)
    response = client.post(reverse("export"), {"form": "long"})
    assert response["Content-Type"].startswith("text/csv") and response.streaming
    body = _body(response).decode()
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
    response = client.post(
        reverse("export"), {"form": "long", "identified": "on", "reason": "Audit"}
    )
    rows = _rows(_body(response))
    assert {(r["date"], r["day"]) for r in rows} == {("2026-10-25", "7")}


def test_wide_export_has_one_row_per_time_point(client, rated):
    client.force_login(rated.clinician)
    rows = _rows(_body(client.post(reverse("export"), {"form": "wide"})))
    assert len(rows) == 2
    assert [float(r["wai-sr_bond_mean"]) for r in rows] == [2.0, 4.0]


@pytest.fixture
def depression(people, rate):
    rate(bond=None, code="phq-9", answers={n: 2 for n in range(1, 8)} | {8: 1, 9: 1})  # 16
    rate(bond=None, code="srs", answers={1: 8.1, 2: 8.2, 3: 8.1, 4: 8.2}, days_ago=2)  # 32.6
    return people


def test_wide_export_columns_say_sum_or_mean_and_carry_the_primary_score(client, depression):
    client.force_login(depression.clinician)
    body = _body(client.post(reverse("export"), {"form": "wide"})).decode()
    header = body.splitlines()[0].split(",")
    assert "phq-9_total_sum" in header and "srs_total_sum" in header
    assert not [c for c in header if c in ("phq-9_total", "srs_total")]
    values = {k: v for row in _rows(body) for k, v in row.items() if v}
    assert values["phq-9_total_sum"] == "16" and values["phq-9_total_band"] == "Moderately severe"
    assert values["phq-9_total_prorated"] == "0"
    assert values["srs_total_sum"] == "32.6"
    assert "1.78" not in body and "8.15" not in body


def test_long_export_says_which_statistic_each_score_is(client, depression, rate):
    rate(bond=3)
    client.force_login(depression.clinician)
    rows = _rows(_body(client.post(reverse("export"), {"form": "long"})))
    by_scale = {(r["instrument"], r["scale"]): r for r in rows}
    phq = by_scale[("phq-9", "total")]
    assert (phq["score"], phq["statistic"], phq["band"]) == ("16", "sum", "Moderately severe")
    assert (phq["sum"], phq["mean"], phq["prorated"]) == ("16.0", "1.78", "0")
    bond = by_scale[("wai-sr", "bond")]
    assert (bond["score"], bond["statistic"]) == ("3", "mean")
    assert "value" not in rows[0]  # "value" said nothing about what the number is


def test_a_prorated_phq9_is_exported_whole_and_marked(client, people, rate):
    answers = {1: 2, 2: 2, 3: 2, 4: 2, 5: 1, 6: 1, 7: 1, 8: None, 9: None}  # 11/7 x 9 -> 14
    rate(bond=None, code="phq-9", answers=answers)
    client.force_login(people.clinician)
    rows = _rows(_body(client.post(reverse("export"), {"form": "wide"})))
    assert (rows[0]["phq-9_total_sum"], rows[0]["phq-9_total_prorated"]) == ("14", "1")


def test_fhir_carries_each_primary_score_as_an_observation(tmp_path, depression, rate):
    from fhir.resources.R4B.bundle import Bundle

    rate(bond=3)
    out = tmp_path / "bundle.json"
    call_command("export_responses", "--format", "fhir", "--out", str(out), stdout=io.StringIO())
    bundle = Bundle.model_validate_json(out.read_text())
    observations = {
        e.resource.code.text: e.resource
        for e in bundle.entry
        if e.resource.__resource_type__ == "Observation"
    }
    assert set(observations) == {"PHQ-9 total (sum)", "SRS total (sum)", "WAI-SR total (mean)"}
    phq = observations["PHQ-9 total (sum)"]
    assert (float(phq.valueQuantity.value), phq.valueQuantity.unit) == (16, "sum")
    assert phq.interpretation[0].text == "Moderately severe"
    assert phq.derivedFrom[0].reference.startswith("QuestionnaireResponse/")
    assert float(observations["SRS total (sum)"].valueQuantity.value) == 32.6
    wai = observations["WAI-SR total (mean)"]
    bond = next(c for c in wai.component if c.code.text == "WAI-SR bond (mean)")
    assert float(bond.valueQuantity.value) == 3
    assert '"effectiveDateTime"' not in out.read_text()  # de-identified: no dates


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
    rows = _rows(_body(ok))
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


def test_the_exports_page_runs_a_constant_number_of_queries(
    client, rated, rate, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(rated.clinician)
    for form in ("long", "wide"):
        with CaptureQueriesContext(connection) as small:
            _body(client.post(reverse("export"), {"form": form}))
        for days_ago in range(3, 13):
            rate(bond=3, days_ago=days_ago)
        with django_assert_max_num_queries(len(small.captured_queries)):
            response = client.post(reverse("export"), {"form": form})
            assert response.status_code == 200 and _body(response)


def test_identified_csv_cells_cannot_run_as_spreadsheet_formulas(client, rated):
    rated.patient.first_name = '=HYPERLINK("http://evil.test","x")'
    rated.patient.last_name = "@SUM(1+1)"
    rated.patient.record_number = "+RP-1"
    rated.patient.save()
    client.force_login(rated.admin)
    body = _body(
        client.post(
            reverse("export"), {"form": "long", "identified": "on", "reason": "Audit request 13"}
        )
    ).decode()
    rows = _rows(body)
    assert rows[0]["name"] == """'=HYPERLINK("http://evil.test","x") @SUM(1+1)"""
    assert rows[0]["record_number"] == "'+RP-1"
    text_columns = ["name", "record_number", "patient", "session", "session_kind", "band"]
    for row in rows:
        assert not any(row[c].startswith(("=", "+", "-", "@")) for c in text_columns)
    # Numbers stay numbers: a day before enrolment is still -3, not text; a tab is text.
    rated.enrolment.start_date = timezone.localdate() + datetime.timedelta(days=1)
    rated.enrolment.save()
    rated.patient.first_name = "\tTab"
    rated.patient.save()
    body = _body(
        client.post(
            reverse("export"), {"form": "long", "identified": "on", "reason": "Audit request 14"}
        )
    ).decode()
    assert {(r["name"], r["day"]) for r in _rows(body)} == {
        ("'\tTab @SUM(1+1)", "-3"),
        ("'\tTab @SUM(1+1)", "-2"),
    }


def test_csv_streams_in_pieces_and_says_the_same_as_one_piece(client, rated, monkeypatch):
    from alliance import exports

    for n in range(5):
        outcome_services.response_record(
            actor=rated.admin,
            patient=EnrolmentFactory().patient,
            version=outcome_services.latest_version("wai-sr"),
            answers={item: 1 + (item + n) % 5 for item in range(1, 13)},
            administered_at=timezone.now() - datetime.timedelta(days=n + 1),
        )
    client.force_login(rated.clinician)
    for form in ("long", "wide"):
        whole = _body(client.post(reverse("export"), {"form": form}))
        with monkeypatch.context() as patched:
            patched.setattr(exports, "BATCH_PATIENTS", 2)  # four statements for six patients
            patched.setattr(exports, "FLUSH_BYTES", 50)
            response = client.post(reverse("export"), {"form": form})
            pieces = list(response.streaming_content)
        assert len(pieces) > 3 and b"".join(pieces) == whole
        assert len({row["patient"] for row in _rows(whole)}) == 6


def test_wide_columns_cover_every_patient_before_the_first_row(client, rated, people):
    other = EnrolmentFactory().patient
    outcome_services.response_record(
        actor=people.admin,
        patient=other,
        version=outcome_services.latest_version("phq-9"),
        answers={n: 1 for n in range(1, 10)},
        administered_at=timezone.now() - datetime.timedelta(days=3),
    )
    client.force_login(rated.clinician)
    rows = _rows(_body(client.post(reverse("export"), {"form": "wide"})))
    by_patient = {}
    for row in rows:
        by_patient.setdefault(row["patient"], []).append(row)
    assert (
        len(by_patient[pseudonym(other)]) == 1 and len(by_patient[pseudonym(people.patient)]) == 2
    )
    phq = by_patient[pseudonym(other)][0]
    assert (phq["phq-9_total_sum"], phq["phq-9_total_band"], phq["wai-sr_bond_mean"]) == (
        "9",
        "Mild",
        "",
    )
    assert all(row["phq-9_total_sum"] == "" for row in by_patient[pseudonym(people.patient)])


# --- the exact CSV ---------------------------------------------------------------------------
#
# One small clinic with every kind of score the instruments make (a sum with bands, a mean with
# subscales, a percent of maximum stored and recomputed, a prorated total, a scale that could not
# be scored), sessions with and without labels, answers outside any session, a patient without
# an enrolment, and text a spreadsheet would run. The four exports are compared byte for byte,
# so a change in how they are built cannot change a column, a quote or a line ending.

EXACT_NOW = datetime.datetime(2026, 6, 15, 12, 0, tzinfo=LONDON)


def _at(day: int, hh: int, mm: int = 0) -> datetime.datetime:
    return datetime.datetime(2026, 6, day, hh, mm, tzinfo=LONDON)


def _answered(code: str, value, *, missing=()) -> dict:
    definition = outcome_services.latest_version(code).definition
    return {
        item["number"]: (None if item["number"] in missing else value)
        for item in definition["items"]
        if item.get("scored", True)
    }


@pytest.fixture
def exact_clinic(people):
    from outcomes.models import InstrumentVersion, Response
    from sessions.models import SessionKind
    from tests.factories import PatientFactory
    from tests.helpers import book_session

    with time_machine.travel(EXACT_NOW, tick=False):
        patient = people.patient
        patient.first_name, patient.last_name = '=cmd|"x"', "O'Brien, Jr"
        patient.record_number = "+44-1"
        patient.save()
        people.enrolment.start_date = datetime.date(2026, 6, 1)
        people.enrolment.save()
        preparation = book_session(
            people.enrolment,
            actor=people.admin,
            kind=SessionKind.PREPARATION,
            start=_at(8, 10),
            label='-Prep, "one"\nroom 2',
        )
        integration = book_session(
            people.enrolment, actor=people.admin, kind=SessionKind.INTEGRATION, start=_at(12, 10)
        )

        def record(patient, code, answers, at, *, session=None, version=None):
            return outcome_services.response_record(
                actor=people.admin,
                patient=patient,
                version=version or outcome_services.latest_version(code),
                answers=answers,
                administered_at=at,
                session=session,
                allow_incomplete=True,
            )

        wai = {n: (2 if n in (3, 5, 7, 9) else 4) for n in range(1, 13)} | {12: 5}
        record(patient, "wai-sr", wai, _at(8, 10, 30), session=preparation)
        phq_1 = InstrumentVersion.objects.get(instrument__code="phq-9", version="1")
        record(
            patient,
            "phq-9",
            _answered("phq-9", 1),
            _at(8, 10, 40),
            session=preparation,
            version=phq_1,
        )
        prorated = {1: 2, 2: 2, 3: 2, 4: 2, 5: 1, 6: 1, 7: 1, 8: None, 9: None}
        record(patient, "phq-9", prorated, _at(8, 10, 50), session=preparation)
        meq = {n: (n % 6) for n in range(1, 31)}
        record(patient, "meq-30", meq, _at(12, 10, 30), session=integration)
        record(patient, "srs", {1: 8.1, 2: 8.2, 3: 8.1, 4: 8.2}, _at(12, 15))
        # 00:30 on 30 May in London is still 29 May in UTC, and before the enrolment began.
        piq = _answered("piq", 3, missing=range(15, 24))
        record(patient, "piq", piq, datetime.datetime(2026, 5, 30, 0, 30, tzinfo=LONDON))
        older = record(patient, "meq-30", {n: (n % 4) + 1 for n in range(1, 31)}, _at(13, 9))
        # A response scored before percent of maximum was stored: the export computes it.
        Response.objects.filter(pk=older.pk).update(extras={})
        record(patient, "ebi", {n: 10 * n + 1 for n in range(1, 7)}, _at(13, 9, 5))

        other = PatientFactory(first_name="Bea", last_name="Plain", record_number="RP-B")
        record(other, "gad-7", _answered("gad-7", 2), _at(10, 9))
        record(other, "cadss", _answered("cadss", 0) | {1: 3, 2: 4}, _at(10, 9, 20))
        PatientFactory(record_number="RP-C")  # nothing answered: no rows
    return people


def _export(client, user, form: str, **identified) -> bytes:
    client.force_login(user)
    response = client.post(reverse("export"), {"form": form, **identified})
    assert response.status_code == 200
    return _body(response)


# Cells as they must appear in the file: quoted where they hold a comma, a quote or a line
# break, and text a spreadsheet would run prefixed with a quote.
PREP = '"\'-Prep, ""one""\nroom 2"'
NAME = '"\'=cmd|""x"" O\'Brien, Jr"'
# (date, day, session_kind, session | instrument, version, scale, score, statistic, band,
# prorated, sum, mean) of each score, in the order of the long export.
EXACT_SCORES = [
    ("2026-05-30", "-2", "", "", "piq,1,total,,mean,,0,,"),
    ("2026-05-30", "-2", "", "", "piq,1,avoidance_maladaptive,3,mean,,0,42.0,3.0"),
    ("2026-05-30", "-2", "", "", "piq,1,goals_adaptive,,mean,,0,,"),
    ("2026-06-08", "7", "preparation", PREP, "wai-sr,1,total,3.42,mean,,0,41.0,3.42"),
    ("2026-06-08", "7", "preparation", PREP, "wai-sr,1,goal,4,mean,,0,16.0,4.0"),
    ("2026-06-08", "7", "preparation", PREP, "wai-sr,1,task,4.25,mean,,0,17.0,4.25"),
    ("2026-06-08", "7", "preparation", PREP, "wai-sr,1,bond,2,mean,,0,8.0,2.0"),
    ("2026-06-08", "7", "preparation", PREP, "phq-9,1,total,9,sum,Mild,0,9.0,1.0"),
    ("2026-06-08", "7", "preparation", PREP, "phq-9,2,total,14,sum,Moderate,1,14.0,1.57"),
    ("2026-06-12", "11", "integration", "", "meq-30,1,total,50,percent_of_max,,0,75.0,2.5"),
    ("2026-06-12", "11", "integration", "", "meq-30,1,mystical,50.7,percent_of_max,,0,38.0,2.53"),
    ("2026-06-12", "11", "integration", "", "meq-30,1,positive_mood,40,percent_of_max,,0,12.0,2.0"),
    (
        "2026-06-12",
        "11",
        "integration",
        "",
        "meq-30,1,transcendence,43.3,percent_of_max,,0,13.0,2.17",
    ),
    ("2026-06-12", "11", "integration", "", "meq-30,1,ineffability,80,percent_of_max,,0,12.0,4.0"),
    ("2026-06-12", "11", "", "", "srs,1,total,32.6,sum,,0,32.6,8.15"),
    # Percent of maximum recomputed from the stored (rounded) means: 2.33 -> 46.6.
    ("2026-06-13", "12", "", "", "meq-30,1,total,50,percent_of_max,,0,75.0,2.5"),
    ("2026-06-13", "12", "", "", "meq-30,1,mystical,44,percent_of_max,,0,33.0,2.2"),
    ("2026-06-13", "12", "", "", "meq-30,1,positive_mood,46.6,percent_of_max,,0,14.0,2.33"),
    ("2026-06-13", "12", "", "", "meq-30,1,transcendence,63.4,percent_of_max,,0,19.0,3.17"),
    ("2026-06-13", "12", "", "", "meq-30,1,ineffability,60,percent_of_max,,0,9.0,3.0"),
    ("2026-06-13", "12", "", "", "ebi,1,total,36,mean,,0,216.0,36.0"),
]
EXACT_OTHER_SCORES = [
    ("2026-06-10", "", "", "", "gad-7,1,total,14,sum,Moderate,0,14.0,2.0"),
    ("2026-06-10", "", "", "", "cadss,1,total,7,sum,Dissociation,0,7.0,0.3"),
]
WIDE_COLUMNS = (
    "cadss_total_sum,cadss_total_band,cadss_total_prorated,ebi_total_mean,ebi_total_prorated,"
    "gad-7_total_sum,gad-7_total_band,gad-7_total_prorated,meq-30_total_percent_of_max,"
    "meq-30_total_prorated,meq-30_ineffability_percent_of_max,meq-30_mystical_percent_of_max,"
    "meq-30_positive_mood_percent_of_max,meq-30_transcendence_percent_of_max,phq-9_total_sum,"
    "phq-9_total_band,phq-9_total_prorated,piq_total_mean,piq_total_prorated,"
    "piq_avoidance_maladaptive_mean,piq_goals_adaptive_mean,srs_total_sum,srs_total_prorated,"
    "wai-sr_total_mean,wai-sr_total_prorated,wai-sr_bond_mean,wai-sr_goal_mean,wai-sr_task_mean"
)
# One row per time point: a session, or a day outside sessions (the unlabelled integration
# session and the SRS later that day share "day 11"). The later PHQ-9 of the preparation
# overwrites the earlier one; each row's session comes from its first score.
EXACT_POINTS = [
    ("2026-05-30", "-2", "", "", ",,,,,,,,,,,,,,,,,,0,3,,,,,,,,"),
    ("2026-06-08", "7", "preparation", PREP, ",,,,,,,,,,,,,,14,Moderate,1,,,,,,,3.42,0,2,4,4.25"),
    ("2026-06-12", "11", "integration", "", ",,,,,,,,50,0,80,50.7,40,43.3,,,,,,,,32.6,0,,,,,"),
    ("2026-06-13", "12", "", "", ",,,36,0,,,,50,0,60,44,46.6,63.4,,,,,,,,,,,,,,"),
]
EXACT_OTHER_POINTS = [
    ("2026-06-10", "", "", "", "7,Dissociation,0,,,14,Moderate,0,,,,,,,,,,,,,,,,,,,,"),
]


def _exact(header: str, rows_by_patient, *, identified: bool) -> bytes:
    named = "record_number,name,date," if identified else ""
    lines = [f"patient,{named}day,session_kind,session,{header}"]
    for patient, record_number, name, rows in rows_by_patient:
        for date, day, kind, session, cells in rows:
            who = f"{patient},{record_number},{name},{date}" if identified else patient
            lines.append(f"{who},{day},{kind},{session},{cells}")
    return "".join(f"{line}\r\n" for line in lines).encode()


def test_every_export_is_exactly_the_agreed_csv(client, exact_clinic):
    people = exact_clinic
    other = Patient.objects.get(record_number="RP-B")
    named = {"identified": "on", "reason": "Audit"}
    long_header = "instrument,version,scale,score,statistic,band,prorated,sum,mean"
    for form, header, scores, other_scores in (
        ("long", long_header, EXACT_SCORES, EXACT_OTHER_SCORES),
        ("wide", WIDE_COLUMNS, EXACT_POINTS, EXACT_OTHER_POINTS),
    ):
        rows = [
            (pseudonym(people.patient), "'+44-1", NAME, scores),
            (pseudonym(other), "RP-B", "Bea Plain", other_scores),
        ]
        assert _export(client, people.clinician, form) == _exact(header, rows, identified=False)
        assert _export(client, people.admin, form, **named) == _exact(header, rows, identified=True)


def _hmac_pseudonym(secret: str, public_id) -> str:
    digest = hmac.new(secret.encode(), str(public_id).encode(), hashlib.sha256).hexdigest()
    return f"P-{digest[:12]}"


def test_pseudonyms_kept_by_the_process_are_the_hmac_of_the_current_key(settings):
    ids = [uuid.uuid4() for _ in range(3)]
    settings.SECRET_KEY = "first-key-" + "x" * 40
    first = [_hmac_pseudonym(settings.SECRET_KEY, public_id) for public_id in ids]
    # Made, then found again, by UUID and by its text alike.
    assert exports.pseudonyms_of(ids) == first
    assert exports.pseudonyms_of([str(public_id) for public_id in ids]) == first
    assert exports.pseudonym_of(ids[1]) == first[1]
    # A new key gives new pseudonyms, not the ones kept for the old key.
    settings.SECRET_KEY = "second-key-" + "y" * 40
    second = [_hmac_pseudonym(settings.SECRET_KEY, public_id) for public_id in ids]
    assert exports.pseudonyms_of(ids) == second and set(second).isdisjoint(first)


def test_pseudonyms_kept_by_the_process_stay_bounded(monkeypatch, settings):
    monkeypatch.setattr(exports, "KNOWN_PSEUDONYMS_LIMIT", 4)
    settings.SECRET_KEY = "bounded-key-" + "z" * 40
    many = [uuid.uuid4() for _ in range(6)]
    exports.pseudonyms_of(many)
    later = [uuid.uuid4() for _ in range(2)]
    assert exports.pseudonyms_of(later) == [
        _hmac_pseudonym(settings.SECRET_KEY, public_id) for public_id in later
    ]
    # Past the limit the process started again rather than keep all eight.
    assert len(exports._known_pseudonyms) == 2


def test_wide_rows_follow_when_answers_were_given_not_the_order_they_were_entered(client, people):
    """Paper forms typed in late carry the higher ids: a time point still takes its session and
    day from its earliest answer and each cell from its latest, and the rows come in the order
    the points were first answered. An export that leaned on the order rows happen to arrive
    in (ids, or a sorted subquery feeding an aggregate) would get all three wrong here."""
    from sessions.models import SessionKind
    from tests.helpers import book_session

    with time_machine.travel(EXACT_NOW, tick=False):
        people.enrolment.start_date = datetime.date(2026, 6, 1)
        people.enrolment.save()
        sessions = {
            kind: book_session(
                people.enrolment, actor=people.admin, kind=kind, start=start, label="Week 1"
            )
            for kind, start in (
                (SessionKind.PREPARATION, _at(8, 10)),
                (SessionKind.INTEGRATION, _at(12, 10)),
            )
        }

        def phq(answer: int, at, kind=None):
            outcome_services.response_record(
                actor=people.admin,
                patient=people.patient,
                version=outcome_services.latest_version("phq-9"),
                answers=_answered("phq-9", answer),
                administered_at=at,
                session=sessions.get(kind),
            )

        phq(2, _at(12, 10, 30), SessionKind.INTEGRATION)  # entered first, answered last
        phq(1, _at(8, 10, 30), SessionKind.PREPARATION)
        phq(0, _at(6, 9))  # entered last, answered first: outside any session
    rows = _rows(_export(client, people.clinician, "wide"))
    assert [
        (r["day"], r["session_kind"], r["session"], r["phq-9_total_sum"], r["phq-9_total_band"])
        for r in rows
    ] == [
        ("5", "", "", "0", "Minimal"),
        ("7", "preparation", "Week 1", "18", "Moderately severe"),
    ]


def test_beat_builds_the_wide_lines_that_changed_every_minute(rated):
    from django_celery_beat.models import PeriodicTask

    from alliance.models import WideLine
    from alliance.tasks import refresh_wide_lines

    task = PeriodicTask.objects.get(task="alliance.refresh_wide_lines")
    assert task.enabled and (task.interval.every, task.interval.period) == (1, "minutes")
    assert refresh_wide_lines() >= 1
    assert WideLine.objects.filter(patient=rated.patient).count() == 2
