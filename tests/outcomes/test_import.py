import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from outcomes.models import Response
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

HEADER = "record_number,instrument,administered_at," + ",".join(f"item_{n}" for n in range(1, 13))


def _write(tmp_path, rows):
    path = tmp_path / "responses.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return str(path)


def test_a_good_file_imports_every_row(tmp_path):
    PatientFactory(record_number="RP-1")
    PatientFactory(record_number="RP-2")
    path = _write(
        tmp_path,
        [
            "RP-1,wai-sr,2026-03-01T10:00," + ",".join(["4"] * 12),
            "rp-2,WAI-SR,2026-03-02," + ",".join(["3"] * 12),
        ],
    )
    call_command("import_responses", path)
    assert Response.objects.filter(source="import").count() == 2
    assert Response.objects.get(patient__record_number="RP-2").scores.get(scale="total").mean == 3


def test_a_file_with_bad_rows_imports_nothing_and_reports_each(tmp_path, capsys):
    PatientFactory(record_number="RP-1")
    path = _write(
        tmp_path,
        [
            "RP-1,wai-sr,2026-03-01," + ",".join(["4"] * 12),  # good
            "RP-404,wai-sr,2026-03-01," + ",".join(["4"] * 12),  # unknown patient
            "RP-1,wai-sr,yesterday," + ",".join(["4"] * 12),  # bad date
            "RP-1,wai-sr,2026-03-01," + ",".join(["9"] + ["4"] * 11),  # out of range
            "RP-1,nope,2026-03-01," + ",".join(["4"] * 12),  # unknown instrument
        ],
    )
    with pytest.raises(CommandError, match="4 bad row"):
        call_command("import_responses", path)
    errors = capsys.readouterr().err
    assert "line 3: unknown record number 'RP-404'" in errors
    assert "line 4: administered_at 'yesterday' is not a date" in errors
    assert "line 5: item_1:" in errors
    assert "line 6: unknown instrument 'nope'" in errors
    assert Response.objects.count() == 0


def test_too_many_missing_items_in_a_row_refuses_the_file(tmp_path, capsys):
    PatientFactory(record_number="RP-1")
    answers = ["4"] * 12
    answers[2] = answers[4] = ""  # bond items 3 and 5 missing
    path = _write(tmp_path, ["RP-1,wai-sr,2026-03-01," + ",".join(answers)])
    with pytest.raises(CommandError):
        call_command("import_responses", path)
    assert "line 2: too many items are unanswered to score it (missing: 3, 5)" in (
        capsys.readouterr().err
    )
    assert Response.objects.count() == 0


def test_every_kind_of_bad_row_is_reported_together(tmp_path, capsys):
    PatientFactory(record_number="RP-1")
    missing_bond = ["4"] * 12
    missing_bond[2] = missing_bond[4] = ""
    path = tmp_path / "mixed.csv"
    path.write_text(
        "\n".join(
            [
                "record_number,instrument,version,administered_at,session_kind,"
                + ",".join(f"item_{n}" for n in range(1, 13)),
                "RP-1,wai-sr,,2026-03-01,," + ",".join(["4"] * 12),  # good
                "RP-1,wai-sr,7,2026-03-01,," + ",".join(["4"] * 12),  # no such version
                "RP-1,wai-sr,,2026-03-01,," + ",".join(missing_bond),  # not scorable
                "RP-1,wai-sr,,2026-03-01,nap," + ",".join(["4"] * 12),  # bad session kind
                "RP-1,wai-sr,,2026-03-01,dosing," + ",".join(["4"] * 12),  # no such session
                "RP-1,wai-sr,,2999-01-01,," + ",".join(["4"] * 12),  # future
                "RP-1,wai-sr,,2026-03-01,," + ",".join(["x"] + ["4"] * 11),  # not a number
                "RP-9,nope,,soon,," + ",".join(["4"] * 12),  # three problems in one row
            ]
        )
        + "\n"
    )
    with pytest.raises(CommandError, match="6 bad row"):
        call_command("import_responses", str(path))
    errors = capsys.readouterr().err
    assert "line 3: instrument 'wai-sr' has no version '7' (known: 1)" in errors
    assert "line 4: too many items are unanswered to score it (missing: 3, 5)" in errors
    assert "line 5" not in errors  # an unknown session kind is a warning, not a bad row
    assert "line 6: the patient has no dosing session before 2026-03-01" in errors
    assert "line 7: administered_at is in the future" in errors
    assert "line 8: item_1 'x' is not a number" in errors
    assert (
        "line 9: unknown record number 'RP-9'; unknown instrument 'nope'; "
        "administered_at 'soon' is not a date"
    ) in errors
    assert "line 2" not in errors
    assert Response.objects.count() == 0


def test_importing_the_same_file_twice_adds_nothing(tmp_path):
    PatientFactory(record_number="RP-1")
    path = _write(tmp_path, ["RP-1,wai-sr,2026-03-01T10:00," + ",".join(["4"] * 12)])
    call_command("import_responses", path)
    out = io.StringIO()
    call_command("import_responses", path, stdout=out)
    assert Response.objects.count() == 1
    assert "Imported 0 response(s). 1 row(s) were already imported" in out.getvalue()


def test_a_row_can_be_filed_under_the_patients_session_of_that_kind(
    tmp_path, people, completed_session
):
    people.patient.record_number = "RP-77"
    people.patient.save()
    when = timezone.localtime(completed_session.scheduled_end).isoformat()
    path = tmp_path / "session.csv"
    path.write_text(
        "record_number,instrument,administered_at,session_kind,item_1,item_2,item_3,item_4\n"
        f"RP-77,srs,{when},preparation,9,9,9,8.5\n"
    )
    call_command("import_responses", str(path))
    response = Response.objects.get()
    assert response.session == completed_session and response.source == "import"
    assert response.entered_by is None
    assert response.scores.get(scale="total").value == 35.5


def test_an_imported_file_asks_for_one_recompute_per_patient(
    tmp_path, django_capture_on_commit_callbacks, monkeypatch
):
    from outcomes.signals import responses_saved

    calls = []

    def receiver(sender, *, responses, **kwargs):
        calls.append(sorted({r.patient_id for r in responses}))

    responses_saved.connect(receiver)
    PatientFactory(record_number="RP-1")
    rows = [f"RP-1,wai-sr,2026-03-0{day}," + ",".join(["4"] * 12) for day in range(1, 6)]
    path = _write(tmp_path, rows)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("import_responses", path)
    responses_saved.disconnect(receiver)
    assert Response.objects.count() == 5
    assert len(calls) == 1 and len(calls[0]) == 1  # one announcement for the whole file


def test_a_missing_file_or_column_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        call_command("import_responses", str(tmp_path / "nope.csv"))
    path = tmp_path / "bad.csv"
    path.write_text("record,instrument\nRP-1,wai-sr\n")
    with pytest.raises(CommandError, match="missing column"):
        call_command("import_responses", str(path))


def test_a_mapping_translates_session_kinds_and_instrument_codes(
    tmp_path, people, completed_session
):
    people.patient.record_number = "RP-77"
    people.patient.save()
    when = timezone.localtime(completed_session.scheduled_end).isoformat()
    path = tmp_path / "redcap.csv"
    path.write_text(
        "record_number,instrument,administered_at,session_kind,item_1,item_2,item_3,item_4\n"
        f"RP-77,SRS_v1,{when},Baseline,9,9,9,8.5\n"
    )
    mapping = tmp_path / "mapping.txt"
    mapping.write_text("# REDCap event names\nbaseline = preparation\n")
    out = io.StringIO()
    call_command(
        "import_responses", str(path), "--map-file", str(mapping), "--map", "srs_v1=srs", stdout=out
    )
    response = Response.objects.get()
    assert response.session == completed_session and response.version.instrument.code == "srs"
    assert "Imported 1 response(s)." in out.getvalue()


def test_a_session_kind_that_maps_to_nothing_imports_the_row_unlinked_with_a_warning(
    tmp_path, capsys
):
    PatientFactory(record_number="RP-1")
    path = tmp_path / "events.csv"
    path.write_text(
        "record_number,instrument,administered_at,session_kind,"
        + ",".join(f"item_{n}" for n in range(1, 13))
        + "\n"
        + "RP-1,wai-sr,2026-03-01,screening_arm_1,"
        + ",".join(["4"] * 12)
        + "\n"
        + "RP-1,wai-sr,2026-03-02,week_4,"
        + ",".join(["3"] * 12)
        + "\n"
    )
    out = io.StringIO()
    call_command("import_responses", str(path), "--map", "screening_arm_1=", stdout=out)
    assert Response.objects.filter(session=None).count() == 2
    errors = capsys.readouterr().err
    assert "warning: line 2: session_kind 'screening_arm_1' is not one of" in errors
    assert "warning: line 3: session_kind 'week_4' is not one of" in errors
    assert "imported without a session" in errors
    assert "2 row(s) were imported without a session." in out.getvalue()


def test_a_mapping_that_is_not_from_to_is_refused_before_reading_the_file(tmp_path):
    path = _write(tmp_path, [])
    with pytest.raises(CommandError, match="'baseline' is not of the form from=to"):
        call_command("import_responses", path, "--map", "baseline")
