import io

import pytest
from django.core.management import call_command

from alliance.models import Flag
from clinic.models import Patient, User
from outcomes.models import Response
from sessions.models import Attendance, Session

pytestmark = pytest.mark.django_db


def test_seed_demo_builds_a_clinic_and_a_second_run_adds_nothing():
    out = io.StringIO()
    call_command("seed_demo", patients=12, seed=3, stdout=out)
    assert "admin@rapport.test" in out.getvalue() and "rapport-demo" in out.getvalue()
    assert User.objects.filter(groups__name="coach").count() == 4
    counts = (
        Patient.objects.count(),
        Session.objects.count(),
        Response.objects.count(),
        Flag.objects.count(),
    )
    assert Session.objects.filter(is_group=True).exists()
    assert Attendance.objects.filter(session__is_group=True, status="attended").exists()
    assert Response.objects.filter(version__instrument__code="wai-sr").exists()
    call_command("seed_demo", patients=12, seed=3, stdout=io.StringIO())
    assert (
        Patient.objects.count(),
        Session.objects.count(),
        Response.objects.count(),
        Flag.objects.count(),
    ) == counts
