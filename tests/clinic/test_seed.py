import io

import pytest
from django.core.management import call_command
from django.urls import reverse

from alliance.models import Flag
from clinic.models import Patient, User
from outcomes.models import Response
from sessions.models import Attendance, Session

pytestmark = pytest.mark.django_db


def test_seed_demo_builds_a_clinic_and_a_second_run_adds_nothing():
    out = io.StringIO()
    call_command("seed_demo", patients=8, alumni=2, seed=3, stdout=out)
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
    call_command("seed_demo", patients=8, alumni=2, seed=3, stdout=io.StringIO())
    assert (
        Patient.objects.count(),
        Session.objects.count(),
        Response.objects.count(),
        Flag.objects.count(),
    ) == counts


def test_seeding_asks_no_worker_for_recomputes_and_leaves_its_marks_to_the_drain(
    django_capture_on_commit_callbacks, monkeypatch
):
    from alliance import services as alliance_services
    from alliance.models import StalePatient

    asked = []
    monkeypatch.setattr(
        alliance_services,
        "enqueue_recompute",
        lambda *, patient_ids, bulk=False: asked.append(patient_ids),
    )
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", patients=4, alumni=1, seed=3, stdout=io.StringIO())
    assert asked == []
    # Patients in care were recomputed at the end; the rest wait for the drain, not a task.
    in_care = Patient.objects.filter(status__in=["enrolled", "in_treatment"])
    assert not StalePatient.objects.filter(patient__in=in_care).exists()

    # Outside the seed, a write still asks a worker at once.
    with django_capture_on_commit_callbacks(execute=True):
        alliance_services.mark_stale(patient_ids=[in_care.first().pk])
    assert asked == [[in_care.first().pk]]


def test_the_demo_shows_a_dosing_at_risk_although_its_flag_was_resolved(client):
    call_command("seed_demo", patients=4, alumni=0, seed=3, stdout=io.StringIO())
    robin = Patient.objects.get(record_number="DEMO-R001")
    weak = Flag.objects.filter(patient=robin, kind="weak_bond")  # one per dosing ahead
    assert weak.exists() and set(weak.values_list("status", flat=True)) == {"resolved"}
    clinician = User.objects.get(email="clinician1@rapport.test")
    client.force_login(clinician)
    dosing = Session.objects.get(
        enrolment__patient=robin, kind="dosing", label="Ketamine session 1"
    )
    for url in (
        reverse("home"),
        reverse("program_sessions", args=[dosing.program_id]),
        reverse("session_detail", args=[dosing.public_id]),
        reverse("session_ready", args=[dosing.public_id]),
    ):
        assert "At risk — resolved" in client.get(url).content.decode(), url
    assert (
        "Why the dosing should go ahead"
        in client.get(reverse("session_ready", args=[dosing.public_id])).content.decode()
    )
    # Every open safety flag of the demo is on the clinician's worklist.
    worklist = client.get(reverse("flag_worklist")).content.decode()
    for flag in Flag.objects.filter(kind="safety", status__in=Flag.UNRESOLVED):
        assert str(flag.public_id) in worklist


@pytest.mark.shifted_clock
def test_every_demo_coach_has_a_session_to_log_and_a_dosing_this_week(client):
    import datetime

    from django.utils import timezone

    call_command("seed_demo", patients=3, alumni=0, seed=5, stdout=io.StringIO())
    coaches = User.objects.filter(groups__name="coach").order_by("email")
    assert coaches.count() == 4
    week_ahead = timezone.now() + datetime.timedelta(days=7)
    for coach in coaches:
        client.force_login(coach)
        caseload = client.get(reverse("home")).content.decode()
        to_log = Session.objects.filter(
            facilitators=coach, status="scheduled", scheduled_start__lte=timezone.now()
        )
        assert to_log.exists(), coach.email
        # The caseload lists it, with the way to log it.
        assert reverse("session_log", args=[to_log.first().public_id]) in caseload, coach.email
        dosing = Session.objects.filter(
            facilitators=coach,
            kind="dosing",
            status="scheduled",
            scheduled_start__gte=timezone.now(),
            scheduled_start__lte=week_ahead,
        ).first()
        assert dosing is not None, coach.email
        # The dosing's patient is on the coach's caseload.
        patient = dosing.attendances.get().patient
        assert client.get(reverse("patient_detail", args=[patient.public_id])).status_code == 200
