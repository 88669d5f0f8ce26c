"""load_instruments and the demo answers."""

import copy
import io

import pytest
from django.core.management import CommandError, call_command

from outcomes import scoring
from outcomes.models import Instrument, InstrumentVersion, Response

pytestmark = pytest.mark.django_db


def test_load_instruments_twice_changes_nothing():
    before = list(InstrumentVersion.objects.values_list("pk", "content_hash").order_by("pk"))
    out = io.StringIO()
    call_command("load_instruments", stdout=out)
    call_command("load_instruments", stdout=out)
    assert list(InstrumentVersion.objects.values_list("pk", "content_hash").order_by("pk")) == (
        before
    )
    assert Instrument.objects.count() == 11  # nine + MOAA/S and CADSS
    assert "piq v1 (provisional: check before clinical use)" in out.getvalue()


def test_a_changed_file_under_the_same_version_is_refused_and_nothing_changes(monkeypatch):
    definitions = scoring.load_all()
    changed = copy.deepcopy(definitions)
    gad = next(d for d in changed if d["code"] == "gad-7")
    gad["bands"][0]["label"] = "Silently renamed"
    monkeypatch.setattr(scoring, "load_all", lambda: changed)
    with pytest.raises(CommandError, match="gad-7 version 1 differs"):
        call_command("load_instruments", stdout=io.StringIO())
    stored = InstrumentVersion.objects.get(instrument__code="gad-7")
    assert stored.definition["bands"][0]["label"] != "Silently renamed"


def test_a_new_version_is_added_beside_the_old_one(monkeypatch):
    definitions = scoring.load_all()
    newer = copy.deepcopy(next(d for d in definitions if d["code"] == "gad-7"))
    newer["version"] = "2"
    monkeypatch.setattr(scoring, "load_all", lambda: [*definitions, newer])
    call_command("load_instruments", stdout=io.StringIO())
    assert InstrumentVersion.objects.filter(instrument__code="gad-7").count() == 2
    from outcomes.services import latest_version

    assert latest_version("gad-7").version == "2"


def test_demo_answers_follow_the_story_and_a_second_run_adds_nothing():
    call_command("seed_demo", patients=6, alumni=1, seed=5, stdout=io.StringIO())
    count = Response.objects.count()
    assert count > 0
    assert Response.objects.filter(version__instrument__code="srs").exists()
    assert Response.objects.filter(version__instrument__code="phq-9").exists()
    from outcomes.demo import seed_responses

    admin = Response.objects.filter(entered_by__isnull=False).first().entered_by
    for patient in {r.patient for r in Response.objects.select_related("patient")}:
        assert seed_responses(patient=patient, actor=admin, seed=5) == 0
    assert Response.objects.count() == count
