"""The rooms pages: admins only (coaches and clinicians 403), every change through the
audited service, bad input shown again with what was typed."""

import pytest
from django.urls import reverse

from clinic.models import AuditEvent
from sessions.models import Room
from tests.helpers import assert_role_answer, matrix_cases

pytestmark = pytest.mark.django_db

#        anonymous, coach, other_coach, clinician, admin
MATRIX = {
    "room_list": [302, 403, 403, 403, 200],
    "room_create": [302, 403, 403, 403, 200],
}


@pytest.mark.parametrize(("page", "persona", "expected"), matrix_cases(MATRIX))
def test_who_may_use_the_rooms_pages(client, people, page, persona, expected):
    assert_role_answer(client, people, persona, reverse(page), expected)


@pytest.mark.parametrize("persona", ["coach", "clinician"])
def test_a_coach_or_clinician_cannot_rename_a_room(client_for, people, persona):
    room = Room.objects.create(name="Garden room")
    response = client_for(getattr(people, persona)).post(
        reverse("room_edit", args=[room.pk]), {"name": "Mine"}
    )
    assert response.status_code == 403
    room.refresh_from_db()
    assert room.name == "Garden room"


def test_an_admin_adds_a_room_and_takes_it_out_of_use(client_for, people):
    client = client_for(people.admin)
    response = client.post(reverse("room_create"), {"name": "Garden room", "is_active": "on"})
    assert response.status_code == 302 and response.url == reverse("room_list")
    room = Room.objects.get(name="Garden room")
    listing = client.get(reverse("room_list")).content.decode()
    assert "Garden room" in listing and reverse("room_edit", args=[room.pk]) in listing
    client.post(reverse("room_edit", args=[room.pk]), {"name": "Garden room"})  # box unticked
    room.refresh_from_db()
    assert not room.is_active
    assert "Out of use" in client.get(reverse("room_list")).content.decode()
    assert list(
        AuditEvent.objects.filter(object_id=str(room.pk), actor=people.admin)
        .order_by("id")
        .values_list("action", flat=True)
    ) == ["create", "update"]


def test_a_taken_room_name_is_shown_again_and_makes_no_second_room(client_for, people):
    Room.objects.create(name="Garden room")
    response = client_for(people.admin).post(reverse("room_create"), {"name": "garden ROOM"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Another room already has this name." in page and 'value="garden ROOM"' in page
    assert Room.objects.filter(name__iexact="garden room").count() == 1


def test_the_programs_page_leads_admins_to_rooms_and_protocols(client_for, people):
    page = client_for(people.admin).get(reverse("program_list")).content.decode()
    assert reverse("room_list") in page and reverse("protocol_list") in page
    page = client_for(people.clinician).get(reverse("program_list")).content.decode()
    assert reverse("room_list") not in page and reverse("protocol_list") not in page
