import pytest
from django.core.management import CommandError, call_command

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
    assert "line 2: Too many items are unanswered" in capsys.readouterr().err
    assert Response.objects.count() == 0
