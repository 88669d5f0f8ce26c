"""Every URL pattern × every role, with real ids: who is let in, who is told nothing, what a
refused POST leaves behind, and that nothing answers 500."""

import pytest
from django.test import Client

from . import catalogue
from .conftest import COUNTS

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "coach_with", "coach_without", "clinician", "admin")
# Below this many URL cases for one role the walk has stopped finding the project's URLs.
MIN_CASES_PER_ROLE = 100


def _clients(world) -> dict[str, Client]:
    users = {
        "coach_with": world.coach,
        "coach_without": world.other_coach,
        "clinician": world.clinician,
        "admin": world.admin,
    }
    clients = {"anonymous": Client(raise_request_exception=False)}
    for role, user in users.items():
        clients[role] = Client(raise_request_exception=False)
        clients[role].force_login(user)
        clients[role].user = user
    return clients


def _still_signed_in(client: Client) -> None:
    """Signing out is one of the URLs: sign the persona back in before the next case."""
    user = getattr(client, "user", None)
    if user is not None and "_auth_user_id" not in client.session:
        client.force_login(user)


def test_the_walk_covers_every_pattern_outside_the_exempt_ones():
    routes = catalogue.all_routes()
    walked = {p.route for p in catalogue.patterns()}
    for route in routes:
        assert route in walked or catalogue.exempt_reason(route), route
    # Nested includes are walked (the sessions, outcomes and alliance apps' own urls.py).
    assert {"sessions/<uuid:public_id>/log/", "q/<str:token>/", "flags/"} <= walked


@pytest.mark.parametrize("role", ROLES)
def test_every_url_for_every_role(role, world, server_errors):
    """One role per test, each on a fresh world: the walk spreads over the pytest workers and
    no role's POSTs change what the next role finds."""
    client = _clients(world)[role]
    failures, cases = [], 0

    def check(condition, message):
        if not condition:
            failures.append(message)

    def client_call(client, method, url):
        _still_signed_in(client)
        return getattr(client, method)(url)

    def check_same_as_unknown(client, method, response, unknown_url, where, statuses=(404, 405)):
        """Not yours looks exactly like does not exist (405 for a GET of a POST-only URL; 403
        for a page of the patient that the role may not use at all)."""
        unknown = client_call(client, method, unknown_url)
        check(response.status_code in statuses, f"{where}: {response.status_code}, not 404")
        check(
            response.status_code == unknown.status_code
            and catalogue.normalised_body(response) == catalogue.normalised_body(unknown),
            f"{where}: differs from the answer for an id that does not exist",
        )

    for pattern in catalogue.patterns():
        url = catalogue.path_for(pattern, catalogue.real_values(pattern, world))
        missing = catalogue.path_for(pattern, catalogue.random_values(pattern, world))
        crossed = absent = None
        if {"enrolment_id", "assignment_id"} & set(pattern.params):
            crossed = catalogue.path_for(pattern, catalogue.crossed_values(pattern, world))
            absent = catalogue.path_for(pattern, catalogue.absent_values(pattern, world))
        for method in ("get", "post"):
            _still_signed_in(client)
            before = catalogue.snapshot() if method == "post" else None
            response = getattr(client, method)(url)
            cases += 1
            where = f"{method.upper()} {pattern.route} as {role}: {response.status_code}"
            check(response.status_code < 500, where)
            if method == "post" and catalogue.refused(response):
                changed = catalogue.changed_tables(before, catalogue.snapshot())
                check(not changed, f"{where} was refused but wrote to {changed}")
            if role == "anonymous" and not pattern.public:
                check(catalogue.is_login_redirect(response), f"{where}, not the sign-in page")
            if role == "anonymous" and "token" in pattern.params:
                # A GET-only token URL answers a POST with 405 before it reads the token.
                check(
                    response.status_code == 404
                    or (method == "post" and response.status_code == 405),
                    f"{where}: an unknown token is a 404",
                )
            if role == "coach_without" and pattern.patient_bound:
                cases += 1
                check_same_as_unknown(client, method, response, missing, where)
            if crossed and role in ("coach_with", "admin"):
                cases += 1
                # Another patient's enrolment: exactly like one that does not exist.
                crossed_response = client_call(client, method, crossed)
                check_same_as_unknown(
                    client,
                    method,
                    crossed_response,
                    absent,
                    f"{method.upper()} {pattern.route} as {role} with another patient's "
                    f"ids: {crossed_response.status_code}",
                    statuses=(403, 404, 405),
                )
    COUNTS["URL x role cases"] += cases
    print(f"\nURL x role cases as {role}: {cases}")
    assert not server_errors, f"{len(server_errors)} server error(s):\n" + "\n".join(server_errors)
    assert not failures, f"{len(failures)} failure(s):\n" + "\n".join(failures)
    assert cases >= MIN_CASES_PER_ROLE
