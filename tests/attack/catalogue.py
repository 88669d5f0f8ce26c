"""Every URL pattern of the project, with real ids, and what the database looked like.

The attack suite and the audit test walk `patterns()` instead of a hand-written list, so a new
view is covered the day it is added: a pattern whose parameters this module cannot fill makes
the tests fail until it learns them (or the pattern is exempted here with a reason).
"""

import datetime
import re
import uuid
from dataclasses import dataclass
from types import SimpleNamespace

from django.apps import apps
from django.db import connection
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

# Patterns the suite does not walk, and why. Keyed by the start of the route.
EXEMPT_PREFIXES = {
    "admin/": "Django admin internals: its own permission system (is_staff) and its own tests "
    "(tests/outcomes/test_admin.py, tests/clinic/test_security.py)",
    "static/": "static files, served by whitenoise",
}

# Pages that answer without signing in, and why.
PUBLIC = {
    "healthz": "health check for the load balancer",
    "favicon.ico": "a redirect to a static file",
    "login": "the sign-in page",
    "logout": "signing out (POST only)",
    "calendar_feed": "private calendar link: the token is the credential (404 when unknown)",
    "link_open": "patient self-report link: the token is the credential (404 when unknown); "
    "it is traded for a session entry at once",
    "link_answer": "the questionnaire page of a link opened in this browser session (no token)",
    "kiosk_answer": "the patient's page of a kiosk started in this browser (a signed token in the "
    "session, no account); without one it shows the locked screen",
    "kiosk_hand_back": "locks the kiosk started in this browser, if any",
    "kiosk_locked": "the locked kiosk screen: the coach's code or sign-in reopens it",
    "password_set": "an invited member of staff's set-password link: the token is the credential",
}

# Parameters that identify a patient's record (directly or through a session, response, flag,
# enrolment or assignment): a coach without the patient must get the same 404 as for an id that
# does not exist.
PATIENT_BOUND = {"public_id", "enrolment_id", "assignment_id"}

# What a `public_id` names, by the first part of the route.
PUBLIC_ID_OWNERS = {
    "patients": "patient",
    "sessions": "session",
    "responses": "response",
    "flags": "flag",
    "adverse-events": "adverse_event",
}
# Pages about a session that has already been logged.
LOGGED_SESSION_PAGES = {"session_correct"}


@dataclass(frozen=True)
class Pattern:
    route: str  # e.g. "patients/<uuid:public_id>/edit/"
    name: str  # URL name, or the route when unnamed
    params: tuple[str, ...]

    @property
    def patient_bound(self) -> bool:
        return bool(PATIENT_BOUND & set(self.params))

    @property
    def public(self) -> bool:
        return self.name in PUBLIC

    def __str__(self):
        return self.name


def _walk(resolver: URLResolver, prefix: str = ""):
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _walk(entry, route)
        elif isinstance(entry, URLPattern):
            yield route, entry


def exempt_reason(route: str) -> str | None:
    for prefix, reason in EXEMPT_PREFIXES.items():
        if route.startswith(prefix):
            return reason
    return None


def all_routes() -> list[str]:
    return [route for route, _ in _walk(get_resolver())]


def patterns() -> list[Pattern]:
    """Every pattern of the project (nested includes too) except the exempt ones."""
    found = []
    for route, entry in _walk(get_resolver()):
        if exempt_reason(route):
            continue
        params = tuple(re.findall(r"<(?:\w+:)?(\w+)>", route))
        found.append(Pattern(route=route, name=entry.name or route, params=params))
    return found


def by_name(name: str) -> Pattern:
    return next(p for p in patterns() if p.name == name)


def path_for(pattern: Pattern, values: dict) -> str:
    """The URL of `pattern` with its parameters replaced by `values` (by parameter name)."""

    def fill(match):
        name = match.group(1)
        if name not in values:
            raise LookupError(
                f"{pattern.route}: no value for <{name}>. Teach tests/attack/catalogue.py "
                "what it names, or exempt the pattern with a reason."
            )
        return str(values[name])

    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", fill, pattern.route)


def real_values(pattern: Pattern, world) -> dict:
    """Real ids for the persona patient's records."""
    values = {
        "enrolment_id": world.enrolment.pk,
        "assignment_id": world.assignment.pk,
        "program_id": world.program.pk,
        "code": "phq-9",
        "token": "not-a-real-token-0123456789abcdefghijklmno",
        "user_id": world.staff_member.pk,
        "uidb64": "MQ",
        "export_id": world.fhir_export.public_id,
    }
    if "public_id" in pattern.params:
        owner = PUBLIC_ID_OWNERS.get(pattern.route.split("/", 1)[0])
        if owner is None:
            raise LookupError(
                f"{pattern.route}: which record does <public_id> name? Add its route prefix "
                "to PUBLIC_ID_OWNERS in tests/attack/catalogue.py."
            )
        if pattern.name in LOGGED_SESSION_PAGES:
            owner = "logged_session"
        values["public_id"] = getattr(world, owner).public_id
    return values


def random_values(pattern: Pattern, world) -> dict:
    """The same URL with every patient-bound id replaced by one that does not exist."""
    return {
        **real_values(pattern, world),
        "public_id": uuid.uuid4(),
        "enrolment_id": 2_000_000_000,
        "assignment_id": 2_000_000_000,
    }


def absent_values(pattern: Pattern, world) -> dict:
    """The persona patient's URL with enrolment and assignment ids that do not exist."""
    return {
        **real_values(pattern, world),
        "enrolment_id": 2_000_000_000,
        "assignment_id": 2_000_000_000,
    }


def crossed_values(pattern: Pattern, world) -> dict:
    """The persona patient's URL with another patient's enrolment and assignment ids."""
    return {
        **real_values(pattern, world),
        "enrolment_id": world.other_enrolment.pk,
        "assignment_id": world.other_assignment.pk,
    }


def build_world(people):
    """The persona patient with one of everything a URL can point at: a scheduled dosing
    session the persona coach facilitates, a questionnaire response and an open flag."""
    from alliance.models import FhirExport, Flag
    from alliance.services import recompute_patient
    from clinic.roles import Role
    from outcomes import services as outcome_services
    from sessions import services as session_services
    from sessions.models import Session, SessionKind
    from tests.factories import CoachAssignmentFactory, EnrolmentFactory, UserFactory

    start = timezone.now().replace(microsecond=0) + datetime.timedelta(days=3)
    session = session_services.session_book(
        actor=people.admin,
        program=people.enrolment.program,
        enrolment=people.enrolment,
        kind=SessionKind.DOSING,
        start=start,
        end=start + datetime.timedelta(hours=6),
        facilitators=[people.coach],
    )
    # A preparation session this morning, logged as completed.
    earlier = timezone.now().replace(microsecond=0) - datetime.timedelta(hours=3)
    logged_session = session_services.session_book(
        actor=people.admin,
        program=people.enrolment.program,
        enrolment=people.enrolment,
        kind=SessionKind.PREPARATION,
        start=earlier,
        end=earlier + datetime.timedelta(hours=1),
        facilitators=[people.coach],
    )
    session_services.session_log(
        actor=people.coach, session=logged_session, status="completed", duration_minutes=60
    )
    # A weak bond before that dosing: the real rules raise the flag.
    response = outcome_services.response_record(
        actor=people.coach,
        patient=people.patient,
        version=outcome_services.latest_version("wai-sr"),
        answers={n: (2 if n in (3, 5, 7, 9) else 4) for n in range(1, 13)},
        administered_at=timezone.now() - datetime.timedelta(days=1),
    )
    recompute_patient(patient_id=people.patient.pk)
    flag = Flag.objects.get(patient=people.patient, kind=Flag.Kind.WEAK_BOND)
    adverse_event = session_services.adverse_event_record(
        actor=people.coach,
        patient=people.patient,
        token=uuid.uuid4(),
        description="Headache",
        onset_at=timezone.now() - datetime.timedelta(hours=1),
        grade="mild",
        relatedness="possible",
    )
    # Another patient, looked after by the other coach: their enrolment and assignment ids are
    # real, but not the persona patient's.
    other_enrolment = EnrolmentFactory(enrolled_by=people.admin)
    other_assignment = CoachAssignmentFactory(
        enrolment=other_enrolment, coach=people.other_coach, assigned_by=people.admin
    )
    # A FHIR export the clinician asked for (still waiting: no file to serve).
    fhir_export = FhirExport.objects.create(
        requested_by=people.clinician, requested_at=timezone.now()
    )
    return SimpleNamespace(
        **vars(people),
        fhir_export=fhir_export,
        # A member of staff for the admin's staff pages to change (not one of the personas).
        staff_member=UserFactory(role=Role.COACH, display_name="Sol Spare"),
        other_enrolment=other_enrolment,
        other_assignment=other_assignment,
        session=Session.objects.get(pk=session.pk),
        logged_session=Session.objects.get(pk=logged_session.pk),
        response=response,
        flag=flag,
        adverse_event=adverse_event,
        program=people.enrolment.program,
        assignment=people.enrolment.assignments.get(),
    )


# --- the database, before and after ---------------------------------------------------------

# Tables a refused request may still write, and why.
WRITES_ALLOWED = {
    "django_session": "the signed-in session (messages, CSRF)",
    "outcomes_linkguess": "counting guessed self-report tokens is the rate limiter",
    "axes_accessattempt": "counting failed sign-ins is the lockout",
    "axes_accessfailurelog": "counting failed sign-ins is the lockout",
    "axes_accesslog": "sign-in log",
    "otp_totp_totpdevice": "a wrong second-factor code counts towards the device's throttle",
}
# Opening a record writes a VIEW audit row by design; every other audit row is a change.
ROW_FILTERS = {"clinic_auditevent": "WHERE action <> 'view'"}


def _tables() -> list[str]:
    tables = {m._meta.db_table for m in apps.get_models(include_auto_created=True)}
    existing = set(connection.introspection.table_names())
    return sorted((tables & existing) - set(WRITES_ALLOWED))


def snapshot() -> dict[str, str]:
    """A digest of every row of every table (one query): any insert, update or delete shows."""
    tables = _tables()
    parts = [
        f"(SELECT md5(coalesce(string_agg(md5(t::text), '' ORDER BY md5(t::text)), '')) "
        f'FROM "{table}" t {ROW_FILTERS.get(table, "")})'
        for table in tables
    ]
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts))
        return dict(zip(tables, cursor.fetchone(), strict=True))


def changed_tables(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(table for table in before if before[table] != after[table])


# --- responses ------------------------------------------------------------------------------


def _forms_in(value, depth: int = 0):
    from django.forms import BaseForm

    if isinstance(value, BaseForm):
        yield value
    elif isinstance(value, list | tuple) and depth < 2:
        for item in value:
            yield from _forms_in(item, depth + 1)


def rendered_forms(response) -> list:
    """The forms a page rendered (also forms in lists of (name, form) pairs)."""
    from django.test.utils import ContextList

    contexts = response.context if isinstance(response.context, ContextList) else [response.context]
    found = []
    for context in contexts:
        if context is None or not hasattr(context, "flatten"):
            continue
        for value in context.flatten().values():
            for form in _forms_in(value):
                if all(form is not f for f in found):
                    found.append(form)
    return found


def bound_forms(response) -> list:
    return [form for form in rendered_forms(response) if form.is_bound]


def is_login_redirect(response) -> bool:
    return response.status_code == 302 and response.url.startswith("/accounts/login/")


def refused(response) -> bool:
    """The request was turned down: an error status, a sign-in redirect, or a form shown
    again with its errors."""
    if response.status_code >= 400 or is_login_redirect(response):
        return True
    return response.status_code == 200 and any(form.errors for form in bound_forms(response))


_VOLATILE = [
    (re.compile(rb'name="csrfmiddlewaretoken" value="[^"]*"'), b"csrf"),
    (re.compile(rb'nonce="[^"]*"'), b'nonce=""'),
]


def normalised_body(response) -> bytes:
    body = response.content
    for pattern, replacement in _VOLATILE:
        body = pattern.sub(replacement, body)
    return body
