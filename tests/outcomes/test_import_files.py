"""A file that is not the CSV import_responses reads is one clear error, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from outcomes.models import Response
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
HEADER = b"record_number,instrument,administered_at," + b",".join(
    f"item_{n}".encode() for n in range(1, 13)
)

FILES = {
    "latin-1": (HEADER + b"\nRP-1,wai-sr,2026-03-01,4,4,4,4,4,4,4,4,4,4,4,4 Jos\xe9\n", "UTF-8"),
    "binary": (bytes(range(256)) * 8, "UTF-8"),
    "spreadsheet": (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00", "not a CSV text file"),
    "nul-in-csv": (HEADER + b"\nRP-\x001,wai-sr,2026-03-01\n", "not a CSV text file"),
    "empty": (b"", "the file is empty"),
    "no-columns": (b"just some text\nand more\n", "missing column(s): record_number"),
    "only-blank-lines": (b"\n\n\n", "the file is empty"),
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_a_file_that_is_not_csv_text_is_one_clear_error(tmp_path, capsys, name):
    PatientFactory(record_number="RP-1")
    content, message = FILES[name]
    path = tmp_path / f"{name}.csv"
    path.write_bytes(content)
    with pytest.raises(CommandError) as refused:
        call_command("import_responses", str(path))
    assert str(refused.value).startswith("Nothing was imported: line ")
    assert message in str(refused.value)
    assert Response.objects.count() == 0


def test_a_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_responses", str(tmp_path))


def test_an_impossible_date_in_a_row_is_reported_with_its_line(tmp_path, capsys):
    PatientFactory(record_number="RP-1")
    path = tmp_path / "dates.csv"
    path.write_bytes(
        HEADER
        + b"\nRP-1,wai-sr,2026-02-30,"
        + b",".join([b"4"] * 12)
        + b"\nRP-1,wai-sr,1999-12-31,"
        + b",".join([b"4"] * 12)
        + b"\n"
    )
    with pytest.raises(CommandError, match="2 bad row"):
        call_command("import_responses", str(path))
    errors = capsys.readouterr().err
    assert "line 2: administered_at '2026-02-30' is not a date" in errors
    assert "line 3: administered_at is before 2000" in errors


def test_the_command_line_shows_no_traceback(tmp_path):
    path = tmp_path / "binary.csv"
    path.write_bytes(bytes(range(256)) * 8)
    result = subprocess.run(
        [sys.executable, "manage.py", "import_responses", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "CommandError: Nothing was imported: line 1: the file is not UTF-8 text" in result.stderr
