"""Named personas, set up the same way for every test that needs them; the shifted clock."""

import datetime
import functools
import zoneinfo

import pytest
import time_machine
from django.conf import settings
from django.core.cache import cache

from clinic.roles import Role
from sessions.models import SessionKind

from .factories import UserFactory
from .helpers import book_session, make_people


def pytest_addoption(parser):
    parser.addoption(
        "--patients",
        type=int,
        default=10_000,
        help="make bench: patients in the large clinic (the small one has a tenth).",
    )


@pytest.fixture
def people(db):
    """A patient with a coach, another coach without them, a clinician and an admin."""
    return make_people()


@pytest.fixture
def dosing_in(people):
    """Book the patient's dosing this many days from now."""

    def _dosing_in(days):
        return book_session(
            people.enrolment,
            actor=people.admin,
            kind=SessionKind.DOSING,
            hours_from_now=24 * days,
            minutes=6 * 60,
        )

    return _dosing_in


@pytest.fixture
def superuser(db):
    """Whoever runs the installation: the only one the Django admin lets in. Also an admin by
    role, since the staff services it calls check the role, not the flag."""
    return UserFactory(role=Role.ADMIN, display_name="Rhea Root", is_staff=True, is_superuser=True)


@pytest.fixture
def client_for(client):
    """Log the test client in as a persona: `client_for(people.coach)`."""

    def login(user):
        client.force_login(user)
        return client

    return login


# --- the shifted clock -----------------------------------------------------------------------
#
# The suite must pass at any hour and on any date. A test marked `pytest.mark.shifted_clock`
# runs once on the real clock (id `clock=real`) and once more at each of the instants below,
# with time ticking on from there: today at the clinic's awkward local hours, and both 2026 UK
# clock-change days. Mark the tests whose rule turns on the hour or the date (a window before a
# dosing, "today", an expiry, a schedule in local days), not whole modules: a role check or a
# range check run nine times proves nothing more than once, and the suite pays for each run.
# Where a module is marked, `real_clock(reason=...)` keeps one slow test on the real clock only.
# Only Python's clock moves; PostgreSQL's now() does not, so the code and the tests read the time
# from `django.utils.timezone`, never from the database.

SHIFTED_HOURS = ("00:30", "09:59", "10:01", "23:30")
CLOCK_CHANGE_DAYS = (datetime.date(2026, 3, 29), datetime.date(2026, 10, 25))
CLOCK_CHANGE_HOURS = ("00:30", "10:01")


def _at(day: datetime.date, hhmm: str) -> datetime.datetime:
    zone = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    return datetime.datetime.combine(day, datetime.time.fromisoformat(hhmm), tzinfo=zone)


@functools.cache
def shifted_instants() -> list[tuple[str, datetime.datetime | None]]:
    """(test id, instant) pairs; `None` is the real, unshifted clock. "Today" is read once, so
    every test of a run that crosses midnight shifts to the same instants."""
    today = datetime.datetime.now(zoneinfo.ZoneInfo(settings.TIME_ZONE)).date()
    instants = [_at(today, hhmm) for hhmm in SHIFTED_HOURS]
    instants += [_at(day, hhmm) for day in CLOCK_CHANGE_DAYS for hhmm in CLOCK_CHANGE_HOURS]
    return [("clock=real", None)] + [
        (f"clock={instant.isoformat(timespec='minutes')}", instant) for instant in instants
    ]


def pytest_report_header(config):
    shifted = ", ".join(name.removeprefix("clock=") for name, at in shifted_instants() if at)
    return f"shifted_clock tests also run at: {shifted} ({settings.TIME_ZONE})"


def pytest_generate_tests(metafunc):
    definition = metafunc.definition
    if not definition.get_closest_marker("shifted_clock"):
        return
    real_only = definition.get_closest_marker("real_clock")
    if real_only and not real_only.kwargs.get("reason"):
        raise pytest.UsageError(f"{definition.nodeid}: say why with real_clock(reason=...)")
    pairs = shifted_instants()[:1] if real_only else shifted_instants()
    ids, instants = zip(*pairs, strict=True)
    metafunc.parametrize("_clock", instants, ids=ids, indirect=True)


def pytest_collection_modifyitems(items):
    """Shift the clock before any function-scoped fixture (the database transaction, the
    personas, factories) runs, so every row is written at the shifted time. Session-wide
    fixtures (the test database itself) stay on the real clock."""
    for item in items:
        names = item.fixturenames
        if "_clock" not in names:
            continue
        names.remove("_clock")
        definitions = item._fixtureinfo.name2fixturedefs
        first_per_test = next(
            (
                index
                for index, name in enumerate(names)
                if name in definitions and definitions[name][-1].scope == "function"
            ),
            len(names),
        )
        names.insert(first_per_test, "_clock")


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with an empty cache: a value cached from another test's clinic (the
    clinic's bond percentiles) would leak into this one."""
    cache.clear()


@pytest.fixture(autouse=True)
def _clock(request):
    instant = getattr(request, "param", None)
    if instant is None:
        yield
        return
    uses_database = request.node.get_closest_marker("django_db") or "db" in request.fixturenames
    if uses_database:
        request.getfixturevalue("django_db_setup")  # created once, on the real clock
    with time_machine.travel(instant, tick=True):
        yield


@pytest.fixture
def world(people):
    """The personas, and the persona patient with one of every record a URL can name."""
    from .attack.catalogue import build_world

    return build_world(people)


@pytest.fixture
def ketamine_dosing(people):
    """An intranasal ketamine dosing of the persona patient at the ketamine protocol's dosing
    step (pre-dose, +40 min, +2 h, pre-discharge; at least 120 minutes' observation), with
    the coach facilitating and the dose given `minutes_ago`. Call it: `ketamine_dosing(50)`."""
    from decimal import Decimal

    from django.utils import timezone

    from clinic.models import Program
    from sessions import services as session_services
    from sessions.models import ProtocolStep, Session

    def make(minutes_ago: int = 50):
        Program.objects.filter(pk=people.enrolment.program_id).update(modality="ketamine")
        people.enrolment.program.refresh_from_db()
        dose_at = timezone.now().replace(second=0, microsecond=0) - datetime.timedelta(
            minutes=minutes_ago
        )
        session = session_services.session_book(
            actor=people.admin,
            program=people.enrolment.program,
            enrolment=people.enrolment,
            kind="dosing",
            start=dose_at - datetime.timedelta(minutes=15),
            end=dose_at + datetime.timedelta(hours=3),
            facilitators=[people.coach],
        )
        step = ProtocolStep.objects.get(
            protocol__name="Ketamine-assisted therapy series", label="Ketamine session 1"
        )
        Session.objects.filter(pk=session.pk).update(protocol_step=step)
        session.refresh_from_db()
        session_services.dosing_record(
            actor=people.coach,
            session=session,
            substance="ketamine",
            dose_mg=Decimal("56"),
            route=Session.Route.INTRANASAL,
            actual_start=dose_at,
        )
        session.refresh_from_db()
        return session

    return make


# --- transactional tests leave the migrations' rows behind them ------------------------------
#
# A transactional test ends with a flush, which also empties what the data migrations wrote
# (roles, instruments, protocols, schedules). Alone, pytest-django runs such tests last, but
# pytest-xdist's work stealing can hand a worker ordinary tests after its transactional ones;
# they would find no roles. So the rows are loaded back as soon as a transactional test ends.


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    marker = item.get_closest_marker("django_db")
    # After the last test the test database is gone with the session: nothing to restore.
    if nextitem is None or marker is None:
        return
    if not (marker.kwargs.get("transaction") or marker.args[:1] == (True,)):
        return
    from django.db import connection
    from pytest_django.plugin import blocking_manager_key

    contents = getattr(connection, "_test_serialized_contents", None)
    if contents:
        with item.config.stash[blocking_manager_key].unblock():
            connection.creation.deserialize_db_from_string(contents)
