"""Shared helpers for browser tests: real Chromium (Debian's) against pytest-django's
live server. Import the `browser` fixture into a test module to use it:
`from tests.browser import _page, _sign_in, browser_fixture  # noqa: F401` (registered under
the name `browser`, so tests taking `browser` do not shadow the import)."""

import pytest
from django.db import connections
from django.urls import reverse

from tests.factories import PASSWORD


@pytest.fixture(name="browser")
def browser_fixture(monkeypatch):
    playwright = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API keeps an event loop running in this thread; the test's own ORM
    # calls are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        yield chromium
        chromium.close()
        # ORM calls made while Playwright's loop runs get their own connection; close it, or
        # the test database cannot be dropped at the end of the run.
        connections.close_all()


def _page(browser, **options):
    page = browser.new_page(**options)
    page.problems = []
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    return page


def _sign_in(page, live_server, user):
    page.goto(live_server.url + reverse("login"))
    page.fill("input[name=username]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form [type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)
