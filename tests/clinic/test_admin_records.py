"""The Django admin writes through the same services as the pages, or is read-only with a
link to the page that does (DESIGN §2)."""

import pytest
from django.urls import reverse

from alliance.models import FlagRule
from clinic.models import AuditEvent, CoachAssignment, Enrolment, Patient, Program
from sessions.models import Session, SessionKind
from tests.factories import ProgramFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def _change(model, obj):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[obj.pk])


def _add(model):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")


def test_enrolments_are_not_added_in_the_admin_but_on_the_patient_page(admin_client, people):
    program = ProgramFactory()
    count = Enrolment.objects.count()
    response = admin_client.post(
        _add(Enrolment),
        {"patient": people.patient.pk, "program": program.pk, "start_date": "2026-12-01"},
    )
    assert response.status_code == 403
    assert Enrolment.objects.count() == count
    page = admin_client.get(_change(Enrolment, people.enrolment)).content.decode()
    assert reverse("patient_detail", args=[people.patient.public_id]) in page


def test_patient_status_cannot_be_changed_around_the_lifecycle_in_the_admin(
    admin_client, people, superuser
):
    url = _change(Patient, people.patient)
    admin_client.post(url, {"status": "completed", "record_number": "X", "first_name": "Y"})
    people.patient.refresh_from_db()
    assert people.patient.status != "completed" and people.patient.first_name == "Pat"
    page = admin_client.get(url).content.decode()
    assert "Open the patient page" in page
    # Opening a patient in the admin is a view of their record.
    assert AuditEvent.objects.filter(
        patient=people.patient, action="view", actor=superuser
    ).exists()


def test_coach_assignments_change_only_on_the_patient_page(admin_client, people):
    assignment = CoachAssignment.objects.get(enrolment=people.enrolment)
    admin_client.post(_change(CoachAssignment, assignment), {"end_date": "2026-12-01"})
    assignment.refresh_from_db()
    assert assignment.end_date is None


def test_sessions_and_thresholds_are_read_only_with_a_link_to_their_page(admin_client, people):
    from datetime import timedelta

    from django.utils import timezone

    from sessions import services as session_services

    start = timezone.now() + timedelta(days=3)
    session = session_services.session_book(
        actor=people.admin,
        program=people.enrolment.program,
        enrolment=people.enrolment,
        kind=SessionKind.PREPARATION,
        start=start,
        end=start + timedelta(hours=1),
    )
    admin_client.post(_change(Session, session), {"status": "cancelled"})
    session.refresh_from_db()
    assert session.status == "scheduled"
    assert (
        reverse("session_detail", args=[session.public_id])
        in admin_client.get(_change(Session, session)).content.decode()
    )
    rule = FlagRule.objects.get(program=None)
    admin_client.post(_change(FlagRule, rule), {"weak_bond_below": "4.9"})
    rule.refresh_from_db()
    assert rule.weak_bond_below == 3.5
    assert (
        reverse("flag_rule_default") in admin_client.get(_change(FlagRule, rule)).content.decode()
    )


def test_a_program_saved_in_the_admin_goes_through_the_audited_service(admin_client, superuser):
    response = admin_client.post(
        _add(Program),
        {
            "name": "Evening circle",
            "kind": "group",
            "modality": "psilocybin",
            "capacity": "6",
            "start_date": "2027-01-04",
            "is_active": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    program = Program.objects.get(name="Evening circle")
    event = AuditEvent.objects.get(object_type="clinic.program", object_id=str(program.pk))
    assert event.actor == superuser and event.detail["changes"]["name"]["new"] == "Evening circle"


def test_rooms_and_protocols_are_read_only_in_the_admin_with_a_link_to_their_pages(
    admin_client,
):
    from sessions.models import Protocol, Room

    room = Room.objects.create(name="Garden room")
    admin_client.post(_change(Room, room), {"name": "Renamed", "is_active": "on"})
    room.refresh_from_db()
    assert room.name == "Garden room"
    assert (
        reverse("room_edit", args=[room.pk])
        in admin_client.get(_change(Room, room)).content.decode()
    )
    protocol = Protocol.objects.first()
    admin_client.post(_change(Protocol, protocol), {"name": "Renamed", "modality": "other"})
    protocol.refresh_from_db()
    assert protocol.name != "Renamed"
    page = admin_client.get(_change(Protocol, protocol)).content.decode()
    assert reverse("protocol_edit", args=[protocol.pk]) in page
    assert admin_client.get(_add(Room)).status_code == 403
