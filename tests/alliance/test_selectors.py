"""Reads the pages share."""

import pytest
from django.utils import timezone

from alliance import selectors
from alliance.models import Flag
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


def _flag(patient, kind, status=Flag.Status.OPEN):
    return Flag.objects.create(
        patient=patient,
        kind=kind,
        severity="high",
        status=status,
        evidence={},
        raised_at=timezone.now(),
        resolution_note="Talked it through." if status == Flag.Status.RESOLVED else "",
    )


def test_navigation_counts_the_open_flags_each_persona_may_see(people):
    _flag(people.patient, Flag.Kind.SAFETY)
    _flag(people.patient, Flag.Kind.WEAK_BOND, status=Flag.Status.ACKNOWLEDGED)
    _flag(people.patient, Flag.Kind.WEAK_BOND, status=Flag.Status.RESOLVED)
    _flag(PatientFactory(), Flag.Kind.SAFETY)  # nobody's coach

    assert selectors.flag_counts(user=people.clinician) == {"open": 3, "safety": 2}
    assert selectors.flag_counts(user=people.admin) == {"open": 3, "safety": 2}
    assert selectors.flag_counts(user=people.coach) == {"open": 2, "safety": 1}
    assert selectors.flag_counts(user=people.other_coach) == {"open": 0, "safety": 0}


def test_adverse_event_rates_leave_scipy_stats_unloaded():
    # Importing scipy.stats cost a web process's first program page most of a second.
    import os
    import subprocess
    import sys

    code = (
        "import sys, django; django.setup(); from alliance.selectors import _rate; "
        "rate = _rate('Any', 3, 10); assert round(rate.low, 2) == 10.78, rate; "
        "sys.exit('scipy.stats' in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))
