"""The protocol pages: admins only (coaches and clinicians 403); a protocol made here, with
its steps and the questionnaires due after them, is what an enrolment then schedules."""

import pytest
from django.urls import reverse

from clinic import services as clinic_services
from clinic.models import AuditEvent
from sessions.models import Protocol, ProtocolStep, Session
from tests.factories import PatientFactory, ProgramFactory
from tests.helpers import assert_role_answer, matrix_cases

pytestmark = pytest.mark.django_db

#        anonymous, coach, other_coach, clinician, admin
MATRIX = {
    "protocol_list": [302, 403, 403, 403, 200],
    "protocol_create": [302, 403, 403, 403, 200],
}

STEP = {
    "order": "1",
    "kind": "preparation",
    "label": "First preparation",
    "anchor": "start",
    "day_offset": "2",
    "start_time": "10:30",
    "duration_minutes": "90",
    "instruments_due": ["wai-sr", "srs"],
}


@pytest.mark.parametrize(("page", "persona", "expected"), matrix_cases(MATRIX))
def test_who_may_use_the_protocol_pages(client, people, page, persona, expected):
    assert_role_answer(client, people, persona, reverse(page), expected)


@pytest.mark.parametrize("persona", ["coach", "clinician"])
def test_a_coach_or_clinician_cannot_change_a_protocol_or_its_steps(client_for, people, persona):
    protocol = Protocol.objects.get(name__icontains="ketamine")
    step = protocol.steps.first()
    client = client_for(getattr(people, persona))
    urls = [
        reverse("protocol_edit", args=[protocol.pk]),
        reverse("protocol_step_create", args=[protocol.pk]),
        reverse("protocol_step_edit", args=[protocol.pk, step.pk]),
    ]
    for url in urls:
        assert client.post(url, {**STEP, "name": "Mine", "modality": "other"}).status_code == 403
    assert Protocol.objects.get(pk=protocol.pk).name == protocol.name
    assert ProtocolStep.objects.get(pk=step.pk).label == step.label


def test_a_step_is_found_only_under_its_own_protocol(client_for, people):
    ketamine = Protocol.objects.get(name__icontains="ketamine")
    other = Protocol.objects.exclude(pk=ketamine.pk).first()
    url = reverse("protocol_step_edit", args=[other.pk, ketamine.steps.first().pk])
    assert client_for(people.admin).get(url).status_code == 404


def test_an_admin_builds_a_protocol_that_enrolment_then_schedules(client_for, people):
    client = client_for(people.admin)
    created = client.post(
        reverse("protocol_create"),
        {
            "name": "Ketamine, short course",
            "modality": "ketamine",
            "min_preparation_before_dosing": "1",
            "is_active": "on",
        },
    )
    protocol = Protocol.objects.get(name="Ketamine, short course")
    assert created.url == reverse("protocol_edit", args=[protocol.pk])
    form = client.get(reverse("protocol_step_create", args=[protocol.pk])).content.decode()
    assert 'value="wai-sr"' in form and 'value="1"' in form  # the next step number offered
    added = client.post(reverse("protocol_step_create", args=[protocol.pk]), STEP)
    assert added.status_code == 302
    page = client.get(reverse("protocol_edit", args=[protocol.pk])).content.decode()
    assert "1. First preparation" in page and "WAI-SR, SRS" in page

    program = ProgramFactory(protocol=protocol, modality="ketamine")
    patient = PatientFactory()
    enrolment = clinic_services.patient_enrol(
        actor=people.admin, patient=patient, program=program, start_date=program.start_date
    )
    session = Session.objects.get(enrolment=enrolment)
    assert session.label == "First preparation" and session.duration_minutes is None
    assert (session.scheduled_end - session.scheduled_start).total_seconds() == 90 * 60
    assert session.protocol_step.instruments_due == ["wai-sr", "srs"]
    assert AuditEvent.objects.filter(
        actor=people.admin, object_type="clinic_sessions.protocolstep", action="create"
    ).exists()


def test_editing_a_step_keeps_the_order_of_its_questionnaires(client_for, people):
    step = ProtocolStep.objects.filter(instruments_due=["wai-sr", "srs"]).first()
    url = reverse("protocol_step_edit", args=[step.protocol_id, step.pk])
    client = client_for(people.admin)
    form = client.get(url)
    assert form.status_code == 200
    data = {
        "order": step.order,
        "kind": step.kind,
        "label": "Renamed",
        "anchor": step.anchor,
        "day_offset": step.day_offset,
        "start_time": step.start_time.strftime("%H:%M"),
        "duration_minutes": step.duration_minutes,
        "instruments_due": ["srs", "wai-sr", "gad-7"],  # as the checkboxes post them
    }
    assert client.post(url, data).status_code == 302
    step.refresh_from_db()
    assert step.label == "Renamed" and step.instruments_due == ["wai-sr", "srs", "gad-7"]


def test_a_bad_step_is_shown_again_with_what_was_typed_and_saves_nothing(client_for, people):
    step = Protocol.objects.get(name__icontains="ketamine").steps.order_by("order").first()
    url = reverse("protocol_step_create", args=[step.protocol_id])
    before = step.protocol.steps.count()
    taken = client_for(people.admin).post(
        url, {**STEP, "order": str(step.order), "label": "Typed label"}
    )
    assert taken.status_code == 200
    page = taken.content.decode()
    assert f"Step {step.order} already exists" in page and 'value="Typed label"' in page
    nonsense = client_for(people.admin).post(url, {**STEP, "instruments_due": ["not-a-test"]})
    assert nonsense.status_code == 200 and "is-invalid" in nonsense.content.decode()
    assert step.protocol.steps.count() == before
