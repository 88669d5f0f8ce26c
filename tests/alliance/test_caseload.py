"""What the caseload and program pages read beside each patient (alliance.caseload)."""

import pytest

from alliance import caseload
from sessions.models import Session
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


def test_the_next_dosing_is_the_nearest_one_ahead_that_is_still_on(people, dosing_in):
    dosing_in(9)
    called_off = dosing_in(2)
    Session.objects.filter(pk=called_off.pk).update(status=Session.Status.CANCELLED)
    nearest = dosing_in(5)
    held = dosing_in(1)
    Session.objects.filter(pk=held.pk).update(
        scheduled_start=held.scheduled_start.replace(year=held.scheduled_start.year - 1),
        scheduled_end=held.scheduled_end.replace(year=held.scheduled_end.year - 1),
    )
    without = PatientFactory()

    rows = [without, people.patient]
    caseload.attach_next_dosing(rows)

    assert people.patient.next_dosing_id == nearest.pk
    assert people.patient.next_dosing_public_id == nearest.public_id
    assert people.patient.next_dosing_at == nearest.scheduled_start
    assert without.next_dosing_id is None and without.next_dosing_at is None
    caseload.attach_next_dosing([])  # an empty page asks nothing
