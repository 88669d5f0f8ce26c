"""The admin shows questionnaires read-only and never a token hash."""

import pytest
from django.urls import reverse
from django.utils import timezone

from outcomes import links, services

pytestmark = pytest.mark.django_db


def test_admin_pages_open_and_hide_token_hashes(client, people):
    people.admin.is_superuser = True
    people.admin.save()
    link, _token = links.link_create(
        actor=people.coach, patient=people.patient, instruments=["srs"]
    )
    response = services.response_record(
        actor=people.coach,
        patient=people.patient,
        version=services.latest_version("srs"),
        answers={1: 9, 2: 9, 3: 9, 4: 9},
        administered_at=timezone.now(),
    )
    client.force_login(people.admin)
    for url in (
        reverse("admin:outcomes_selfreportlink_changelist"),
        reverse("admin:outcomes_selfreportlink_change", args=[link.pk]),
        reverse("admin:outcomes_response_changelist"),
        reverse("admin:outcomes_response_change", args=[response.pk]),
        reverse("admin:outcomes_instrumentversion_changelist"),
    ):
        page = client.get(url)
        assert page.status_code == 200, url
        assert link.token_hash not in page.content.decode()
