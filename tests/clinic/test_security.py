import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.hashers import get_hasher
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def test_passwords_are_hashed_with_argon2_outside_tests():
    # The test settings put a fast hasher first; every real environment uses Argon2.
    from clinic.settings import base

    assert base.PASSWORD_HASHERS[0].endswith("Argon2PasswordHasher")
    assert get_hasher("argon2").algorithm == "argon2"


def _login(client, email, password):
    return client.post(reverse("login"), {"username": email, "password": password})


def test_login_with_email_reaches_the_caseload(client, people):
    response = _login(client, people.coach.email.upper(), PASSWORD)
    assert response.status_code == 302 and response.url == reverse("home")


def test_five_failed_logins_lock_the_account_out(client, people):
    for _ in range(4):
        assert _login(client, people.coach.email, "wrong").status_code == 200
    assert _login(client, people.coach.email, "wrong").status_code == 429  # the fifth
    locked = _login(client, people.coach.email, PASSWORD)
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts" in locked.content.decode()


def test_pages_send_a_content_security_policy_without_inline_scripts(client_for, people):
    response = client_for(people.clinician).get(reverse("home"))
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "<script>" not in response.content.decode()


@pytest.fixture
def require_2fa(settings):
    settings.REQUIRE_2FA = True


def test_clinician_must_set_up_a_second_factor_when_required(require_2fa, client_for, people):
    response = client_for(people.clinician).get(reverse("home"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("two_factor_setup"))


def test_coach_is_not_asked_for_a_second_factor(require_2fa, client_for, people):
    assert client_for(people.coach).get(reverse("home")).status_code == 200


def test_a_valid_totp_code_unlocks_the_session(require_2fa, client_for, people):
    client = client_for(people.admin)
    client.get(reverse("two_factor_setup"))  # creates the unconfirmed device and shows the QR
    device = TOTPDevice.objects.get(user=people.admin)
    code = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"
    response = client.post(reverse("two_factor_setup"), {"token": code, "next": "/patients/"})
    assert response.status_code == 302 and response.url == "/patients/"
    device.refresh_from_db()
    assert device.confirmed
    assert client.get(reverse("home")).status_code == 200


def test_a_wrong_totp_code_is_refused(require_2fa, client_for, people):
    client = client_for(people.admin)
    client.get(reverse("two_factor_setup"))
    wrong = client.post(reverse("two_factor_setup"), {"token": "000000"})
    assert "did not match" in wrong.content.decode()
    assert not TOTPDevice.objects.get(user=people.admin).confirmed
    assert client.get(reverse("home")).status_code == 302


def _django(args, **env):
    # Start from the environment minus what the test settings set, so defaults show.
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k not in {"REQUIRE_2FA", "DJANGO_DEBUG", "DJANGO_SETTINGS_MODULE"}
    }
    full_env = {**inherited, **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, capture_output=True, text=True
    )


def test_second_factor_is_on_by_default_in_production_and_off_in_the_demo():
    show = [
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(settings.REQUIRE_2FA)",
    ]
    key = "a-long-random-production-key-for-the-check-only-0123456789-abcdefgh"
    production = _django(
        show, DJANGO_SETTINGS_MODULE="clinic.settings.production", DJANGO_SECRET_KEY=key
    )
    demo = _django(show, DJANGO_SETTINGS_MODULE="clinic.settings.dev")
    assert production.stdout.strip() == "True", production.stderr
    assert demo.stdout.strip() == "False", demo.stderr


def test_check_deploy_is_clean_with_production_settings():
    result = _django(
        ["check", "--deploy", "--fail-level", "WARNING"],
        DJANGO_SETTINGS_MODULE="clinic.settings.production",
        DJANGO_SECRET_KEY="a-long-random-production-key-for-the-check-only-0123456789-abcdefgh",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "clinic.settings.production"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_a_malformed_boolean_setting_is_an_error():
    result = _django(["check"], DJANGO_SETTINGS_MODULE="clinic.settings.dev", REQUIRE_2FA="maybe")
    assert result.returncode != 0
    assert "REQUIRE_2FA='maybe' is not a boolean" in result.stderr


def test_audit_log_cannot_be_edited_in_the_admin(client_for, people, superuser):
    from clinic.models import AuditEvent

    client = client_for(superuser)
    client.get(reverse("patient_detail", args=[people.patient.public_id]))
    event = AuditEvent.objects.get(action="view")
    assert client.get(reverse("admin:clinic_auditevent_changelist")).status_code == 200
    change = client.post(
        reverse("admin:clinic_auditevent_change", args=[event.pk]), {"action": "update"}
    )
    assert change.status_code in (200, 403)
    event.refresh_from_db()
    assert event.action == "view"
    assert client.get(reverse("admin:clinic_auditevent_add")).status_code == 403
    assert client.get(reverse("admin:clinic_auditevent_delete", args=[event.pk])).status_code == 403


# --- sign-in lockout: one spelling of the username for login and for axes ------------------


def _spellings(email):
    local, domain = email.split("@")
    return [email.upper(), f"{local}@{domain.upper()}", f" {email}", f"{email} ", f"\t{email}"]


def test_a_locked_account_stays_locked_however_the_username_is_spelled(client, people):
    for _ in range(5):
        _login(client, people.coach.email, "wrong")
    for spelling in _spellings(people.coach.email):
        refused = _login(client, spelling, PASSWORD)
        assert refused.status_code == 429, repr(spelling)
        assert "_auth_user_id" not in client.session


def test_failures_in_different_spellings_add_up_to_one_lockout(client, people):
    for spelling in _spellings(people.coach.email):  # five failures, five spellings
        _login(client, spelling, "wrong")
    assert _login(client, people.coach.email, PASSWORD).status_code == 429


def test_failures_from_many_addresses_lock_the_account_itself(client, people):
    url = reverse("login")
    for n in range(5):
        client.post(
            url, {"username": people.coach.email, "password": "wrong"}, REMOTE_ADDR=f"203.0.113.{n}"
        )
    fresh_address = {"REMOTE_ADDR": "198.51.100.20"}
    refused = client.post(
        url, {"username": people.coach.email, "password": PASSWORD}, **fresh_address
    )
    assert refused.status_code == 429
    # Another account from that address is unaffected.
    other = client.post(
        url, {"username": people.other_coach.email, "password": PASSWORD}, **fresh_address
    )
    assert other.status_code == 302


def test_a_very_long_username_is_a_form_error_not_a_server_error(client, people):
    for url in (reverse("login"), reverse("admin:login")):
        response = client.post(url, {"username": "a" * 10_000, "password": "wrong"})
        assert response.status_code == 200, url
        assert response.context["form"].errors, url


# --- caching, and assignments that have not started -----------------------------------------


def test_pages_with_patient_data_are_not_stored_by_browsers_or_caches(client_for, people):
    client = client_for(people.coach)
    for url in (
        reverse("home"),
        reverse("patient_list"),
        reverse("patient_detail", args=[people.patient.public_id]),
    ):
        response = client.get(url)
        assert response.status_code == 200
        assert "no-store" in response.headers["Cache-Control"], url


def test_static_files_stay_cacheable_for_signed_in_users(client_for, people):
    response = client_for(people.coach).get("/static/css/app.css")
    assert response.status_code == 200
    assert "no-store" not in response.headers.get("Cache-Control", "")


def test_an_assignment_that_starts_later_gives_access_only_from_its_start(client_for, people):
    import datetime

    from django.utils import timezone

    from clinic import access
    from tests.factories import CoachAssignmentFactory, EnrolmentFactory

    later = EnrolmentFactory(enrolled_by=people.admin)
    assignment = CoachAssignmentFactory(
        enrolment=later,
        coach=people.other_coach,
        assigned_by=people.admin,
        start_date=timezone.localdate() + datetime.timedelta(days=3),
    )
    client = client_for(people.other_coach)
    url = reverse("patient_detail", args=[later.patient.public_id])
    assert client.get(url).status_code == 404
    assert later.patient not in access.patients_visible_to(people.other_coach)
    assignment.start_date = timezone.localdate()
    assignment.save()
    assert client.get(url).status_code == 200
