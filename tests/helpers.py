"""Helpers every app's tests share: booking a session through the service, the one role-matrix
assertion (which persona gets which answer from a page), and data built once per module."""

import contextlib
import datetime
from types import SimpleNamespace

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from clinic.roles import Role
from sessions import services as session_services
from sessions.models import SessionKind

from .factories import CoachAssignmentFactory, EnrolmentFactory, PatientFactory, UserFactory

# The personas of the `people` fixture, in the order a role matrix lists them.
PERSONAS = ("anonymous", "coach", "other_coach", "clinician", "admin")


def make_people() -> SimpleNamespace:
    """The personas of the `people` fixture: a patient with a coach, another coach without
    them, a clinician and an admin. Also for data a module builds once."""
    admin = UserFactory(role=Role.ADMIN, display_name="Ada Admin", is_staff=True)
    patient = PatientFactory(first_name="Pat", last_name="Example")
    enrolment = EnrolmentFactory(patient=patient, enrolled_by=admin)
    coach = UserFactory(role=Role.COACH, display_name="Cora Coach")
    CoachAssignmentFactory(enrolment=enrolment, coach=coach, assigned_by=admin)
    return SimpleNamespace(
        admin=admin,
        clinician=UserFactory(role=Role.CLINICIAN, display_name="Cyd Clinician"),
        coach=coach,
        other_coach=UserFactory(role=Role.COACH, display_name="Otto Othercoach"),
        patient=patient,
        enrolment=enrolment,
    )


def book_session(
    enrolment,
    *,
    actor,
    kind=SessionKind.PREPARATION,
    start=None,
    hours_from_now=24,
    minutes=60,
    facilitators=(),
    room=None,
    label="",
):
    """Book one session for an enrolment through the same service as the pages; it starts at
    `start`, or `hours_from_now` from now (to the second)."""
    if start is None:
        now = timezone.now().replace(microsecond=0)
        start = now + datetime.timedelta(hours=hours_from_now)
    return session_services.session_book(
        actor=actor,
        program=enrolment.program,
        enrolment=enrolment,
        kind=kind,
        start=start,
        end=start + datetime.timedelta(minutes=minutes),
        facilitators=list(facilitators),
        room=room,
        label=label,
    )


def log_dosing_completed(dosing, *, actor, minutes):
    """Log a dosing completed the way a clinic enters a past one from paper: a clinician's
    discharge (overriding the room's checks, with a note) first, as the rule requires."""
    session_services.discharge_record(
        actor=actor,
        session=dosing,
        escort="Partner",
        sedation_resolved=True,
        override_note="Entered after the fact from the paper record.",
    )
    return session_services.session_log(
        actor=actor, session=dosing, status="completed", duration_minutes=minutes
    )


def assert_role_answer(client, people, persona: str, url: str, expected: int, *, method="get"):
    """What one persona gets from a page: `expected` as the status, and a signed-out visitor
    is sent to the sign-in page. A refused persona must be told no more than that."""
    if persona != "anonymous":
        client.force_login(getattr(people, persona))
    response = getattr(client, method)(url)
    assert response.status_code == expected, f"{persona} got {response.status_code} from {url}"
    if persona == "anonymous" and expected == 302:
        assert response.url.startswith(reverse("login"))
    return response


def matrix_cases(matrix: dict[str, list[int]]) -> list[tuple[str, str, int]]:
    """(page, persona, expected status) for every cell of a role matrix, for parametrize."""
    return [
        (page, persona, statuses[PERSONAS.index(persona)])
        for page, statuses in sorted(matrix.items())
        for persona in PERSONAS
    ]


@contextlib.contextmanager
def built_once_for_the_module(django_db_blocker):
    """Rows a module's read-only tests share, built once and rolled back after the module.

    Use it in a module- or class-scoped fixture; each test still runs in its own savepoint inside it
    (as Django's `TestCase.setUpTestData` does), so a test that writes leaves nothing behind.
    """
    with django_db_blocker.unblock(), transaction.atomic():
        yield
        transaction.set_rollback(True)
