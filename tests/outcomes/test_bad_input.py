"""A ?session= that is not a session id is a 404 on the questionnaire and link pages."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("session", ["abc", "-1", "0", "\x00", "a" * 10_000])
@pytest.mark.parametrize("page", ["response_new", "link_new"])
def test_a_session_parameter_that_is_not_a_session_is_a_404(people, client_for, page, session):
    client = client_for(people.clinician)
    client.raise_request_exception = False
    args = [people.patient.public_id] + (["phq-9"] if page == "response_new" else [])
    for method in ("get", "post"):
        url = f"{reverse(page, args=args)}"
        response = getattr(client, method)(url + "?" + _query(session))
        assert response.status_code == 404, (method, response.status_code)


def _query(session: str) -> str:
    from urllib.parse import urlencode

    return urlencode({"session": session})
