"""Shared helpers for browser tests: real Chromium (Debian's) against pytest-django's
live server. Import the `browser` fixture into a test module to use it:
`from tests.browser import _page, _sign_in, browser_fixture, chromium_fixture  # noqa: F401`
(registered as `browser` and `chromium`, so tests taking `browser` do not shadow the import)."""

import pytest
from django.db import DEFAULT_DB_ALIAS, connections
from django.urls import reverse

from tests.factories import PASSWORD


# One Chromium per module, not per test: launching and closing it cost about 0.6 s a test.
@pytest.fixture(name="chromium", scope="module")
def chromium_fixture():
    playwright = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API keeps an event loop running in this thread for as long as Chromium
    # is open, so for the whole module: the tests' own ORM calls, and the database fixtures
    # around them, are still plain synchronous code.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        test_database = connections[DEFAULT_DB_ALIAS]
        with playwright.sync_playwright() as p:
            # Under the running loop Django would hand out a new connection object, without
            # what the test database's set-up keeps on it (the rows a transactional test
            # restores): the tests and their database fixtures keep using the one they had.
            connections[DEFAULT_DB_ALIAS] = test_database
            chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            yield chromium
            chromium.close()


@pytest.fixture(name="browser")
def browser_fixture(chromium):
    """The module's Chromium, left as a new one would be: every page a test opened (each in
    its own context: cookies, storage, timers) is closed when the test ends, so none of them
    polls the live server or holds a sign-in into the next test."""
    yield chromium
    for context in chromium.contexts:
        context.close()
    # Connections opened while Playwright's loop runs (the test's own, and any other alias)
    # are closed, or the test database cannot be dropped at the end of the run.
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
