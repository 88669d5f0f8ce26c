"""seed_demo in bulk builds the same clinic as seed_demo through the services."""

import datetime
import io
import zoneinfo

import pytest
import time_machine
from django.core.management import call_command
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from alliance.models import Flag
from clinic.models import AuditEvent, CoachAssignment, Patient, PatientStatusChange
from outcomes.models import Response, Score
from sessions.models import Attendance, Discharge, Session

pytestmark = pytest.mark.django_db


def _per(queryset, *fields) -> dict:
    return {
        tuple(row[f] for f in fields): row["n"]
        for row in queryset.values(*fields).annotate(n=Count("pk")).order_by(*fields)
    }


def _clinic() -> dict:
    """What a person would count in the seeded clinic, kind by kind."""
    return {
        "patients": _per(Patient.objects, "status"),
        "caseload order": _per(
            Patient.objects, "record_number", "caseload_flag_rank", "caseload_next_dosing_at"
        ),
        "status changes": _per(PatientStatusChange.objects, "from_status", "to_status"),
        "assignments": _per(CoachAssignment.objects, "role", "coach__email"),
        "sessions": _per(Session.objects, "kind", "status", "is_group"),
        "facilitated": _per(Session.facilitators.through.objects, "user__email"),
        "attendance": _per(Attendance.objects, "status"),
        "discharges": _per(Discharge.objects, "override_note"),
        "responses": _per(Response.objects, "version__instrument__code", "complete"),
        "safety answers": _per(
            Response.objects.filter(has_safety_hit=True), "patient__record_number"
        ),
        "scores": _per(Score.objects, "scale", "band"),
        "flags": _per(Flag.objects, "kind", "status"),
        "audit": _per(AuditEvent.objects, "action", "object_type"),
        "response history": Response.history.count(),
    }


def _seed(*, bulk: str, at) -> dict:
    """Seed at one frozen instant, count, and roll the clinic back."""
    with time_machine.travel(at, tick=False), transaction.atomic():
        call_command("seed_demo", patients=12, alumni=3, seed=5, bulk=bulk, stdout=io.StringIO())
        counted = _clinic()
        transaction.set_rollback(True)
    return counted


# Seeding both ways is the slowest comparison in the suite, so it runs at three instants rather
# than at every shifted one: now, and both clock changes (a schedule laid in local days across
# a lost or a repeated hour is where a bulk plan and the services could part).
LONDON = zoneinfo.ZoneInfo("Europe/London")


@pytest.mark.parametrize(
    "when",
    [
        None,
        datetime.datetime(2026, 3, 29, 0, 30, tzinfo=LONDON),
        datetime.datetime(2026, 10, 25, 10, 1, tzinfo=LONDON),
    ],
    ids=["now", "spring-forward", "fall-back"],
)
def test_a_bulk_seeded_clinic_matches_a_service_seeded_one_of_the_same_seed(when):
    at = when or timezone.now()
    through_services = _seed(bulk="off", at=at)
    in_bulk = _seed(bulk="on", at=at)
    # Not an empty comparison: the seed has every kind of row the services write.
    assert through_services["responses"] and through_services["flags"]
    assert any(kind == "dosing" for kind, status, _ in through_services["sessions"])
    for what in through_services:
        assert in_bulk[what] == through_services[what], what


def test_a_second_bulk_run_adds_nothing():
    call_command("seed_demo", patients=6, alumni=2, seed=5, bulk="on", stdout=io.StringIO())
    counts = (Patient.objects.count(), Session.objects.count(), Response.objects.count())
    call_command("seed_demo", patients=6, alumni=2, seed=5, bulk="on", stdout=io.StringIO())
    assert (Patient.objects.count(), Session.objects.count(), Response.objects.count()) == counts


@time_machine.travel(datetime.datetime(2026, 6, 10, 14, 0, tzinfo=datetime.UTC), tick=False)
def test_more_patients_than_the_bulk_threshold_seed_in_bulk(monkeypatch):
    from alliance.management.commands import seed_demo

    planned = []
    real = seed_demo.BulkClinic

    def recording(**kwargs):
        planned.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(seed_demo, "BulkClinic", recording)
    monkeypatch.setattr(seed_demo, "BULK_ABOVE", 3)
    call_command("seed_demo", patients=2, alumni=1, seed=5, stdout=io.StringIO())
    assert planned == []
    call_command("seed_demo", patients=4, alumni=1, seed=5, stdout=io.StringIO())
    assert len(planned) == 1
    assert Patient.objects.filter(record_number="DEMO-0004").exists()


def test_a_bulk_seed_leaves_the_planner_statistics_of_what_it_wrote():
    from django.db import connection

    call_command("seed_demo", patients=6, alumni=2, seed=5, bulk="on", stdout=io.StringIO())
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reltuples FROM pg_class WHERE relname = ANY(%s)",
            [["clinic_coachassignment", "alliance_flag"]],
        )
        estimated = dict(cursor.fetchall())
    assert CoachAssignment.objects.exists()
    assert estimated == {
        "clinic_coachassignment": CoachAssignment.objects.count(),
        "alliance_flag": Flag.objects.count(),
    }


def test_a_bulk_seed_records_its_patients_as_changed_and_leaves_the_triggers_on(monkeypatch):
    from django.db import connection

    from alliance.management.commands import seed_demo
    from alliance.models import WideChange

    # What the load recorded, before the build at the end of the seed clears it.
    monkeypatch.setattr(seed_demo, "wide_lines_refresh", lambda: 0)
    call_command("seed_demo", patients=6, alumni=2, seed=5, bulk="on", stdout=io.StringIO())

    answered = set(Response.objects.values_list("patient_id", flat=True))
    assert answered <= set(WideChange.objects.values_list("patient_id", flat=True))
    with connection.cursor() as cursor:
        cursor.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'wide_change_insert'")
        assert [state for (state,) in cursor.fetchall()] == ["O", "O", "O"]


def test_a_seeded_clinic_has_its_wide_lines_built():
    from alliance import exports
    from alliance.models import WideBuild

    call_command("seed_demo", patients=6, alumni=2, seed=5, bulk="on", stdout=io.StringIO())
    answered = set(Response.objects.values_list("patient_id", flat=True))
    assert answered <= set(WideBuild.objects.values_list("patient_id", flat=True))
    assert exports.wide_lines_due() == []
