"""Which queue a recompute request goes to: a coach's save per patient on the interactive
queue, an import as ONE task on the bulk queue (real Redis, a private pair of queues)."""

import json

import pytest
from django.utils import timezone

from alliance import services
from alliance.queue import enqueue_recompute
from clinic.celery import app, interactive_queue
from outcomes import services as outcome_services
from outcomes.importing import import_responses
from tests.alliance.conftest import wai_answers
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

HEADER = "record_number,instrument,administered_at," + ",".join(f"item_{n}" for n in range(1, 13))


@pytest.fixture
def asked(monkeypatch):
    requests = []
    monkeypatch.setattr(
        services,
        "enqueue_recompute",
        lambda *, patient_ids, bulk=False: requests.append((sorted(patient_ids), bulk)),
    )
    return requests


def test_an_import_asks_for_one_bulk_recompute_of_every_patient_in_it(
    asked, django_capture_on_commit_callbacks
):
    patients = [PatientFactory(record_number=f"RP-{n}") for n in range(3)]
    rows = [
        f"RP-{n},wai-sr,2026-03-0{day}T10:00," + ",".join(["4"] * 12)
        for n in range(3)
        for day in (1, 2)
    ]
    with django_capture_on_commit_callbacks(execute=True):
        import_responses(actor=None, lines=[HEADER, *rows])
    assert asked == [(sorted(p.pk for p in patients), True)]


def test_a_coachs_save_asks_for_its_patient_alone(
    asked, people, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        outcome_services.response_record(
            actor=people.coach,
            patient=people.patient,
            version=outcome_services.latest_version("wai-sr"),
            answers=wai_answers(bond=2),
            administered_at=timezone.now(),
        )
    assert asked == [([people.patient.pk], False)]


def _messages(name: str) -> list[dict]:
    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        found = [json.loads(raw) for raw in client.lrange(name, 0, -1)]
        client.delete(name)
    return found


def test_per_patient_requests_go_to_the_interactive_queue_and_a_bulk_one_to_the_bulk_queue(
    queue,
):
    enqueue_recompute(patient_ids=[3, 1, 2])
    enqueue_recompute(patient_ids=[7, 5, 6], bulk=True)

    interactive = _messages(interactive_queue(queue))
    bulk = _messages(queue)
    assert sorted(m["headers"]["task"] for m in interactive) == ["alliance.recompute_patient"] * 3
    assert [(m["headers"]["task"], m["headers"]["argsrepr"]) for m in bulk] == [
        ("alliance.recompute_patients", "[[5, 6, 7]]")
    ]


@pytest.mark.parametrize(
    "task",
    [
        "alliance.sweep_all",
        "alliance.sweep_upcoming_dosing",
        "alliance.drain_stale",
        "alliance.recompute_expected_bands",
        "alliance.purge_expired_fhir_exports",
        "outcomes.send_due_links",
    ],
)
def test_beats_tasks_never_take_the_interactive_queue(queue, task):
    app.send_task(task, retry=False)
    assert len(_messages(queue)) == 1
    assert _messages(interactive_queue(queue)) == []
