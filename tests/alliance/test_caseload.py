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


def test_one_read_of_flags_serves_the_badges_and_readiness(people, dosing_in):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from alliance.models import Flag

    dosing_in(5)
    now = timezone.now()

    def flag(kind, *, raised_at=now, **fields):
        return Flag.objects.create(
            patient=people.patient,
            kind=kind,
            severity="medium",
            evidence={},
            raised_at=raised_at,
            **fields,
        )

    older = flag(Flag.Kind.SAFETY, raised_at=now - timezone.timedelta(days=1))
    low, gap = flag(Flag.Kind.LOW_ALLIANCE), flag(Flag.Kind.SAFETY_UNANSWERED)  # one moment
    still = flag(
        Flag.Kind.ADVERSE_EVENT,
        status=Flag.Status.RESOLVED,
        still_applies=True,
        resolved_by=people.clinician,
        resolution_note="Talked it through.",
    )
    flag(Flag.Kind.OFF_TRACK, status=Flag.Status.RESOLVED, resolution_note="Back on track.")

    with CaptureQueriesContext(connection) as reads:
        (row,) = caseload.caseload_rows(
            user=people.admin, patients=caseload.caseload_for(user=people.admin)
        )

    assert sum('FROM "alliance_flag"' in q["sql"] for q in reads.captured_queries) == 1
    # Flag's order: newest first, the later of flags raised together first; resolved left out.
    assert [f.pk for f in row.open_flags] == [gap.pk, low.pk, older.pk]
    assert [b["flag"].pk for b in row.flag_badges] == [gap.pk, low.pk, older.pk]
    assert {f"flag:{f.public_id}" for f in (older, low, gap)} < row.readiness.risk_keys
    assert f"resolved:{still.public_id}" in row.readiness.risk_keys
    assert [r.key for r in row.readiness.risks if r.resolved] == [f"resolved:{still.public_id}"]
