import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from outcomes.models import ItemWording

pytestmark = pytest.mark.django_db


def test_imported_wording_replaces_our_labels_on_the_form(tmp_path, client, people):
    path = tmp_path / "gad.json"
    path.write_text(json.dumps({str(n): f"Licensed wording {n}" for n in range(1, 8)}))
    call_command("import_wording", "gad-7", "1", str(path))
    assert ItemWording.objects.count() == 7
    client.force_login(people.clinician)
    html = client.get(reverse("response_new", args=[people.patient.public_id, "gad-7"]))
    assert "3. Licensed wording 3" in html.content.decode()


def test_incomplete_wording_is_refused_and_nothing_changes(tmp_path):
    path = tmp_path / "gad.json"
    path.write_text(json.dumps({"1": "Only one"}))
    with pytest.raises(CommandError, match="missing: \\[2, 3, 4, 5, 6, 7\\]"):
        call_command("import_wording", "gad-7", "1", str(path))
    assert ItemWording.objects.count() == 0
