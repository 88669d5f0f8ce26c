"""The in-app admin pages: staff accounts and new programs. Admins only (coaches and
clinicians 403); every change goes through the services and is audited; bad input re-shows
the form and writes nothing."""

import re

import pytest
from django.core import mail
from django.urls import reverse

from clinic import services
from clinic.models import AuditEvent, Program, User
from clinic.roles import Role
from tests.factories import UserFactory
from tests.helpers import assert_role_answer, matrix_cases

pytestmark = pytest.mark.django_db

MATRIX = {
    "staff_list": [302, 403, 403, 403, 200],
    "staff_invite": [302, 403, 403, 403, 200],
    "program_create": [302, 403, 403, 403, 200],
}


@pytest.mark.parametrize(("page", "persona", "expected"), matrix_cases(MATRIX))
def test_who_may_use_the_admin_pages(client, people, page, persona, expected):
    assert_role_answer(client, people, persona, reverse(page), expected)


@pytest.mark.parametrize("persona", ["coach", "clinician"])
def test_only_admins_change_staff(client_for, people, persona):
    member = UserFactory(role=Role.COACH)
    client = client_for(getattr(people, persona))
    for name in ("staff_edit", "staff_active", "staff_second_factor"):
        assert client.post(reverse(name, args=[member.pk]), {"active": "no"}).status_code == 403
    member.refresh_from_db()
    assert member.is_active


def test_an_invitation_is_a_single_use_link(
    client_for, people, client, settings, django_capture_on_commit_callbacks
):
    settings.SITE_URL = "http://testserver"
    admin = client_for(people.admin)
    data = {"display_name": "Nia New", "email": "Nia@Clinic.test", "role": "coach"}
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(reverse("staff_invite"), data)
    assert response.status_code == 302
    nia = User.objects.get(email="nia@clinic.test")
    assert nia.role == Role.COACH and not nia.has_usable_password()
    assert AuditEvent.objects.filter(
        actor=people.admin, action=AuditEvent.Action.CREATE, object_id=str(nia.pk)
    ).exists()
    # A double submit makes one account: the second is told the address is taken.
    again = admin.post(reverse("staff_invite"), data)
    assert again.status_code == 200 and "already uses this e-mail" in again.content.decode()
    assert User.objects.filter(email__iexact="nia@clinic.test").count() == 1
    assert len(mail.outbox) == 1
    path = re.search(r"http://testserver(/accounts/set-password/\S+/)", mail.outbox[0].body)[1]
    client.logout()
    form = client.get(path, follow=True)
    assert form.status_code == 200
    new = {"new_password1": "a-long-new-passphrase-42", "new_password2": "a-long-new-passphrase-42"}
    client.post(form.redirect_chain[-1][0] if form.redirect_chain else path, new)
    nia.refresh_from_db()
    assert nia.check_password("a-long-new-passphrase-42")
    assert client.get(path).status_code == 404


def test_a_bad_invitation_is_shown_again_and_writes_nothing(client_for, people):
    before = User.objects.count()
    response = client_for(people.admin).post(
        reverse("staff_invite"), {"display_name": "X", "email": "not-an-address", "role": "god"}
    )
    assert response.status_code == 200
    assert "is-invalid" in response.content.decode()
    assert User.objects.count() == before
    assert mail.outbox == []


def test_an_admin_deactivates_changes_role_and_resets_second_factor(client_for, people):
    member = UserFactory(role=Role.COACH, display_name="Sol Spare")
    admin = client_for(people.admin)
    admin.post(reverse("staff_active", args=[member.pk]), {"active": "no"})
    member.refresh_from_db()
    assert not member.is_active
    data = {"display_name": "Sol Spare", "email": member.email, "role": "clinician"}
    assert admin.post(reverse("staff_edit", args=[member.pk]), data).status_code == 302
    member.refresh_from_db()
    assert member.role == Role.CLINICIAN
    admin.post(reverse("staff_second_factor", args=[member.pk]))
    actions = set(
        AuditEvent.objects.filter(actor=people.admin, object_id=str(member.pk)).values_list(
            "action", flat=True
        )
    )
    assert {
        AuditEvent.Action.UPDATE,
        AuditEvent.Action.ROLE,
        AuditEvent.Action.SECOND_FACTOR_RESET,
    } <= actions


def test_an_admin_cannot_deactivate_themselves(client_for, people):
    response = client_for(people.admin).post(
        reverse("staff_active", args=[people.admin.pk]), {"active": "no"}, follow=True
    )
    assert "cannot deactivate your own account" in response.content.decode()
    people.admin.refresh_from_db()
    assert people.admin.is_active


def test_a_superuser_is_not_on_the_staff_pages(client_for, people):
    root = UserFactory(is_superuser=True, is_staff=True)
    assert client_for(people.admin).get(reverse("staff_edit", args=[root.pk])).status_code == 404


def test_a_group_program_needs_a_capacity(client_for, people):
    admin = client_for(people.admin)
    data = {
        "name": "Spring circle",
        "kind": "group",
        "modality": "psilocybin",
        "start_date": "2026-03-01",
    }
    response = admin.post(reverse("program_create"), data)
    assert response.status_code == 200 and "needs a capacity" in response.content.decode()
    assert not Program.objects.filter(name="Spring circle").exists()
    response = admin.post(reverse("program_create"), {**data, "capacity": "8"})
    program = Program.objects.get(name="Spring circle")
    assert response.url == reverse("program_sessions", args=[program.pk])
    assert AuditEvent.objects.filter(
        actor=people.admin, action=AuditEvent.Action.CREATE, object_id=str(program.pk)
    ).exists()


def test_invite_refuses_a_role_that_does_not_exist(people):
    with pytest.raises(services.ValidationError):
        services.user_invite(actor=people.admin, email="a@b.test", display_name="A", role="root")
    assert not User.objects.filter(email="a@b.test").exists()
