"""Admin work inside the app, in real Chromium at a desk and on a phone: an admin invites a
coach (who chooses a password from the e-mailed single-use link and signs in) and creates a
group program, without the Django admin. Run with `-m browser`."""

import re
import shutil

import pytest
from django.core import mail
from playwright.sync_api import expect

from clinic.models import AuditEvent, Program, User
from clinic.roles import Role
from tests.browser import _page, _sign_in, browser_fixture, chromium_fixture  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium"),
]

DESK = {"viewport": {"width": 1366, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def _open_nav(page):
    toggler = page.locator(".navbar-toggler")
    if toggler.is_visible():
        toggler.click()


@pytest.mark.parametrize("size", [DESK, PHONE], ids=["desk", "phone"])
def test_an_admin_invites_a_coach_and_creates_a_group_program(
    browser, live_server, people, size, settings
):
    settings.SITE_URL = live_server.url
    page = _page(browser, **size)
    _sign_in(page, live_server, people.admin)
    _open_nav(page)
    page.get_by_role("link", name="Staff").click()
    page.get_by_role("link", name="Invite a member of staff").click()
    page.fill("input[name=display_name]", "Nia New")
    page.fill("input[name=email]", "nia@clinic.test")
    page.get_by_label("Coach").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Send the invitation").dblclick()
    expect(page.get_by_text("Nia New is invited")).to_be_visible()
    nia = User.objects.get(email="nia@clinic.test")
    assert nia.role == Role.COACH and not nia.has_usable_password()
    assert AuditEvent.objects.filter(actor=people.admin, action=AuditEvent.Action.CREATE).exists()
    assert len(mail.outbox) == 1
    link = re.search(r"http\S+/accounts/set-password/\S+/", mail.outbox[0].body).group(0)

    _open_nav(page)
    page.get_by_role("link", name="Programs").click()
    page.get_by_role("link", name="New program").click()
    page.fill("input[name=name]", "Spring psilocybin circle")
    page.select_option("select[name=kind]", "group")
    page.select_option("select[name=modality]", "psilocybin")
    page.fill("input[name=capacity]", "8")
    with page.expect_navigation():
        page.get_by_role("button", name="Create program").click()
    expect(page.get_by_text("Program Spring psilocybin circle is created.")).to_be_visible()
    program = Program.objects.get(name="Spring psilocybin circle")
    assert program.kind == "group" and program.capacity == 8
    assert not page.evaluate(
        "document.documentElement.scrollWidth > document.documentElement.clientWidth"
    )

    # The coach chooses a password from the link; the link works once.
    invited = _page(browser, **size)
    invited.goto(link)
    invited.fill("input[name=new_password1]", "a-long-and-new-passphrase-42")
    invited.fill("input[name=new_password2]", "a-long-and-new-passphrase-42")
    with invited.expect_navigation():
        invited.get_by_role("button", name="Set my password").click()
    expect(invited.get_by_text("Your password is set")).to_be_visible()
    invited.fill("input[name=username]", "nia@clinic.test")
    invited.fill("input[name=password]", "a-long-and-new-passphrase-42")
    with invited.expect_navigation():
        invited.click("form [type=submit]")
    expect(invited.get_by_role("heading", name="My caseload")).to_be_visible()
    assert invited.goto(link).status == 404
    assert page.problems == []
    assert [problem for problem in invited.problems if "404" not in problem] == []
