"""What the caseload and program pages read beside each patient (alliance.caseload); the
next dosing itself is `sessions.selectors.attach_next_dosing`."""

import pytest

from alliance import caseload

pytestmark = pytest.mark.django_db


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
