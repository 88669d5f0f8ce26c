"""The Django admin is the superuser's; staff accounts there: no road to superuser, no
second-factor secrets."""

import base64
import re

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinic import services
from clinic.models import AuditEvent, User
from clinic.roles import Role
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def _change_form(user, **overrides):
    """What a browser would post for `user`, with every field the old form offered."""
    joined = timezone.localtime(user.date_joined)
    data = {
        "email": user.email,
        "display_name": user.display_name,
        "is_active": "on",
        "is_staff": "on",
        "role": user.role.value if user.role else "",
        "date_joined_0": joined.strftime("%Y-%m-%d"),
        "date_joined_1": joined.strftime("%H:%M:%S"),
        "last_login_0": "",
        "last_login_1": "",
    }
    return {**data, **overrides}


def test_a_staff_admin_gets_nothing_from_the_django_admin(client_for, people, superuser):
    """Admins work on the app's own pages; the raw admin is the superuser's."""
    client = client_for(people.admin)
    for url in (
        reverse("admin:index"),
        reverse("admin:clinic_user_change", args=[people.admin.pk]),
        reverse("admin:clinic_sessions_room_changelist"),
    ):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))
    client.post(
        reverse("admin:clinic_user_change", args=[superuser.pk]),
        _change_form(superuser, email="mine@clinic.test", display_name="Taken over"),
    )
    client.post(
        reverse("admin:clinic_user_change", args=[people.admin.pk]),
        _change_form(people.admin, is_superuser="on"),
    )
    superuser.refresh_from_db()
    people.admin.refresh_from_db()
    assert superuser.email != "mine@clinic.test" and not people.admin.is_superuser
    # The admin's own sign-in page does not let them in either, with the right password.
    client.logout()
    login = client.post(
        reverse("admin:login"), {"username": people.admin.email, "password": PASSWORD}
    )
    assert login.status_code == 200 and "_auth_user_id" not in client.session
    assert "Admin" not in [a.strip() for a in _nav_links(client_for(people.admin))]
    assert "Admin" in [a.strip() for a in _nav_links(client_for(superuser))]


def _nav_links(client) -> list[str]:
    page = client.get(reverse("home")).content.decode()
    return re.findall(r'class="nav-link" href="[^"]*"[^>]*>([^<]+)<', page)


def test_the_user_form_cannot_make_a_staff_admin_superuser(client_for, people, superuser):
    client = client_for(superuser)
    url = reverse("admin:clinic_user_change", args=[people.admin.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert 'name="is_superuser"' not in page.content.decode()
    assert 'name="groups"' not in page.content.decode()
    superuser_group = Group.objects.create(name="everything")
    client.post(
        url,
        _change_form(
            people.admin,
            is_superuser="on",
            groups=[superuser_group.pk],
            user_permissions=[],
        ),
    )
    people.admin.refresh_from_db()
    assert not people.admin.is_superuser
    assert not people.admin.groups.filter(name="everything").exists()
    assert people.admin.role == Role.ADMIN


def test_the_user_form_cannot_make_a_coach_superuser_either(client_for, people, superuser):
    client = client_for(superuser)
    url = reverse("admin:clinic_user_change", args=[people.coach.pk])
    client.post(url, _change_form(people.coach, is_superuser="on"))
    people.coach.refresh_from_db()
    assert not people.coach.is_superuser and not people.coach.is_staff


def test_a_role_change_in_the_admin_goes_through_the_service_and_is_audited(
    client_for, people, superuser
):
    client = client_for(superuser)
    response = client.post(
        reverse("admin:clinic_user_change", args=[people.coach.pk]),
        _change_form(people.coach, role=Role.CLINICIAN.value),
    )
    assert response.status_code == 302
    people.coach.refresh_from_db()
    assert people.coach.role == Role.CLINICIAN
    event = AuditEvent.objects.get(action=AuditEvent.Action.ROLE)
    assert event.actor == superuser
    assert event.object_id == str(people.coach.pk)
    assert event.detail["before"]["role"] == "coach"
    assert event.detail["after"]["role"] == "clinician"


def test_the_role_service_cannot_grant_superuser_and_needs_an_admin(people):
    with pytest.raises(ValidationError):
        services.user_change_role(actor=people.admin, user=people.coach, role="superuser")
    with pytest.raises(PermissionDenied):
        services.user_change_role(actor=people.clinician, user=people.coach, role=Role.ADMIN)
    people.coach.refresh_from_db()
    assert people.coach.role == Role.COACH and not people.coach.is_superuser
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.ROLE).exists()


def test_an_admin_made_with_the_service_is_audited_with_the_staff_flag(people):
    services.user_change_role(actor=people.admin, user=people.clinician, role=Role.ADMIN)
    people.clinician.refresh_from_db()
    assert people.clinician.is_staff and not people.clinician.is_superuser
    event = AuditEvent.objects.get(action=AuditEvent.Action.ROLE)
    assert event.detail == {
        "before": {"role": "clinician", "is_staff": False},
        "after": {"role": "admin", "is_staff": True},
    }


def test_adding_a_user_in_the_admin_gives_one_role_and_audits_it(client_for, superuser):
    client = client_for(superuser)
    response = client.post(
        reverse("admin:clinic_user_add"),
        {
            "email": " New.Coach@Clinic.test ",
            "display_name": "Nia New",
            "role": Role.COACH.value,
            "password1": "a long enough passphrase 42",
            "password2": "a long enough passphrase 42",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    user = User.objects.get(email="new.coach@clinic.test")
    assert user.role == Role.COACH and not user.is_superuser and not user.is_staff
    assert user.check_password("a long enough passphrase 42")
    actions = set(
        AuditEvent.objects.filter(object_id=str(user.pk)).values_list("action", flat=True)
    )
    assert actions == {"create", "role"}


def _device(user):
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)


def _secrets(device):
    return [device.key, base64.b32encode(device.bin_key).decode().rstrip("=")]


def test_the_admin_never_shows_a_second_factor_secret(client_for, people):
    root = UserFactory(is_superuser=True, is_staff=True)
    device = _device(people.clinician)
    client = client_for(root)
    pages = [
        reverse("admin:otp_totp_totpdevice_changelist"),
        reverse("admin:otp_totp_totpdevice_change", args=[device.pk]),
        f"/admin/otp_totp/totpdevice/{device.pk}/config/",
        f"/admin/otp_totp/totpdevice/{device.pk}/qrcode/",
        reverse("admin:clinic_user_change", args=[people.clinician.pk]),
    ]
    for url in pages:
        response = client.get(url, follow=True)
        body = response.content.decode(errors="replace")
        for secret in _secrets(device):
            assert secret not in body, url
        assert "otpauth://" not in body, url
    # Nobody adds a device for someone else, or edits one, in the admin.
    assert client.get(reverse("admin:otp_totp_totpdevice_add")).status_code == 403
    key = device.key
    client.post(
        reverse("admin:otp_totp_totpdevice_change", args=[device.pk]),
        {"user": root.pk, "name": "mine", "confirmed": "on", "key": "00" * 20},
    )
    device.refresh_from_db()
    assert device.user == people.clinician and device.key == key


def test_a_second_factor_reset_removes_the_devices_and_is_audited(client_for, people, superuser):
    _device(people.clinician)
    client = client_for(superuser)
    response = client.post(
        reverse("admin:clinic_user_changelist"),
        {"action": "reset_second_factor", "_selected_action": [people.clinician.pk]},
    )
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=people.clinician).exists()
    event = AuditEvent.objects.get(action=AuditEvent.Action.SECOND_FACTOR_RESET)
    assert event.actor == superuser and event.object_id == str(people.clinician.pk)
    assert event.detail == {
        "before": {"devices": 1, "confirmed": 1},
        "after": {"devices": 0, "confirmed": 0},
    }


def test_a_staff_admin_cannot_reset_a_superusers_second_factor(people):
    root = UserFactory(is_superuser=True, is_staff=True)
    _device(root)
    with pytest.raises(PermissionDenied):
        services.user_reset_second_factor(actor=people.admin, user=root)
    assert TOTPDevice.objects.filter(user=root).exists()


def test_the_admin_form_shows_the_services_refusals_instead_of_failing(
    client_for, people, superuser
):
    client = client_for(superuser)
    own = client.post(
        reverse("admin:clinic_user_change", args=[superuser.pk]),
        _change_form(superuser, role=Role.COACH.value, is_active=""),
    )
    assert own.status_code == 200
    errors = own.context["adminform"].form.errors
    assert "role" in errors and "is_active" in errors
    taken = client.post(
        reverse("admin:clinic_user_change", args=[people.coach.pk]),
        _change_form(people.coach, email=people.clinician.email.upper()),
    )
    assert taken.status_code == 200 and "email" in taken.context["adminform"].form.errors
    superuser.refresh_from_db()
    people.coach.refresh_from_db()
    assert superuser.role == Role.ADMIN and superuser.is_active
    assert people.coach.email != people.clinician.email
    assert not AuditEvent.objects.filter(action__in=["role", "update"]).exists()
