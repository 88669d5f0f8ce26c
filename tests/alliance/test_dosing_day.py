"""The dosing day where the care team sees it: pre-dose vitals in readiness, a serious
adverse event flagged and notified once, the discharge page reading the MOAA/S, the session
timeline and printable summary, the dashboard, the program's event rates, FHIR."""

import datetime
import io
import json
import uuid

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from fhir.resources.R4B.bundle import Bundle

from alliance import caseload, services
from alliance.fhir import write_bundle
from alliance.models import Flag
from alliance.readiness import State
from clinic.models import Patient
from outcomes import services as outcome_services
from sessions import services as session_services
from sessions.models import Discharge, Session


def _vitals(people, session, *, point, minutes_ago=0, **values):
    return session_services.vitals_record(
        actor=people.coach,
        session=session,
        token=uuid.uuid4(),
        point=point,
        measured_at=timezone.now() - datetime.timedelta(minutes=minutes_ago),
        **{"systolic": 128, "diastolic": 82, "heart_rate": 74, "spo2": 98, **values},
    )


def _scale(people, session, code, answers, *, minutes_ago=0):
    return outcome_services.response_record(
        actor=people.coach,
        patient=people.patient,
        version=outcome_services.latest_version(code),
        answers=answers,
        administered_at=timezone.now() - datetime.timedelta(minutes=minutes_ago),
        session=session,
    )


def _serious(people, session, **values):
    return session_services.adverse_event_record(
        actor=people.coach,
        patient=people.patient,
        session=session,
        token=uuid.uuid4(),
        description=values.pop("description", "Fainted, taken to the emergency department"),
        onset_at=timezone.now() - datetime.timedelta(minutes=10),
        grade="severe",
        relatedness="possible",
        serious=True,
        serious_criteria=["hospitalisation"],
        **values,
    )


@pytest.mark.shifted_clock
def test_a_high_pre_dose_blood_pressure_puts_the_dosing_at_risk_in_words(people, ketamine_dosing):
    dosing = ketamine_dosing(-30)  # the dose is due in half an hour
    _vitals(people, dosing, point="pre_dose", systolic=152, diastolic=94)
    answer = caseload.readiness_of(dosing)
    assert answer.state == State.AT_RISK
    text = next(r.text for r in answer.risks if r.key.startswith("vitals:"))
    assert "Blood pressure 152/94 mmHg is above 140/90 before the dose" in text
    assert "prescriber must confirm" in text
    # The prescriber confirms: the same risks signed make the dosing "confirmed".
    services.dosing_sign_off(actor=people.clinician, dosing=dosing, note="Rechecked 138/88")
    assert caseload.readiness_of(dosing).state == State.CONFIRMED


def test_a_normal_pre_dose_reading_adds_no_risk(people, ketamine_dosing):
    dosing = ketamine_dosing(-30)
    _vitals(people, dosing, point="pre_dose")
    assert not [r for r in caseload.readiness_of(dosing).risks if r.key.startswith("vitals:")]


@pytest.mark.shifted_clock
def test_a_serious_adverse_event_is_flagged_at_once_notified_once_and_cleared_when_closed(
    people, ketamine_dosing, django_capture_on_commit_callbacks
):
    dosing = ketamine_dosing(50)
    with django_capture_on_commit_callbacks() as callbacks:
        event = _serious(people, dosing)
    flag = Flag.objects.get(kind="serious_adverse_event")  # raised in the same transaction
    assert flag.severity == "urgent" and flag.dosing_session == dosing
    assert callbacks, "a notification is queued once the event commits"
    assert services.notify_flag(flag_id=flag.pk) is True
    assert services.notify_flag(flag_id=flag.pk) is False
    sent = [m for m in mail.outbox if "Serious adverse event" in m.subject]
    assert len(sent) == 1 and sent[0].subject.startswith("URGENT")
    assert people.clinician.email in sent[0].to
    assert people.patient.last_name not in sent[0].body
    # A second serious event at the same dosing joins the open flag: nobody is mailed twice.
    _serious(people, dosing, description="Vomiting needing fluids")
    assert Flag.objects.filter(kind="serious_adverse_event").count() == 1
    assert len(Flag.objects.get(pk=flag.pk).evidence["events"]) == 2
    # On the worklist until closed.
    client = _client(people)
    assert "Serious adverse event" in client.get(reverse("flag_worklist")).content.decode()
    for open_event in [event, *dosing.adverse_events.exclude(pk=event.pk)]:
        session_services.adverse_event_update(
            actor=people.clinician,
            event=open_event,
            reason="Discharged from hospital",
            outcome="recovered",
            resolved_on=timezone.localdate(),
        )
    flag.refresh_from_db()
    assert flag.status == Flag.Status.AUTO_RESOLVED
    assert "closed" in flag.resolution_note


def test_a_mild_event_raises_no_flag(people, ketamine_dosing):
    dosing = ketamine_dosing(50)
    session_services.adverse_event_record(
        actor=people.coach,
        patient=people.patient,
        session=dosing,
        token=uuid.uuid4(),
        description="Nausea",
        onset_at=timezone.now(),
        grade="mild",
        relatedness="probable",
    )
    assert not Flag.objects.exists()


def _client(people):
    from django.test import Client

    client = Client()
    client.force_login(people.clinician)
    return client


@pytest.mark.shifted_clock
def test_the_discharge_page_reads_the_sedation_score(client_for, people, ketamine_dosing):
    dosing = ketamine_dosing(130)
    _vitals(people, dosing, point="pre_discharge")
    _scale(people, dosing, "moaa-s", {1: 4}, minutes_ago=5)
    client = client_for(people.coach)
    url = reverse("session_discharge", args=[dosing.public_id])
    page = client.get(url).content.decode()
    assert "MOAA/S 4 (Mild sedation)" in page and "Sedation has not resolved" in page
    response = client.post(url, {"escort": "Partner"})
    assert response.status_code == 200 and not Discharge.objects.exists()
    _scale(people, dosing, "moaa-s", {1: 5})
    response = client.post(url, {"escort": "Partner"})
    assert response.status_code == 302
    discharge = Discharge.objects.get()
    assert not discharge.is_override and discharge.sedation_resolved


@pytest.mark.shifted_clock
def test_the_session_page_shows_the_dosing_day_and_the_summary_prints_it(
    client_for, people, ketamine_dosing
):
    dosing = ketamine_dosing(60)
    _vitals(people, dosing, point="pre_dose", minutes_ago=65)
    _vitals(people, dosing, point="plus_40", minutes_ago=20, systolic=186, diastolic=100)
    _scale(people, dosing, "moaa-s", {1: 4}, minutes_ago=19)
    _scale(people, dosing, "cadss", {n: 0 for n in range(1, 24)} | {1: 2, 2: 3}, minutes_ago=18)
    session_services.adverse_event_record(
        actor=people.coach,
        patient=people.patient,
        session=dosing,
        token=uuid.uuid4(),
        description="Nausea",
        onset_at=timezone.now() - datetime.timedelta(minutes=15),
        grade="mild",
        relatedness="probable",
    )
    client = client_for(people.coach)
    page = client.get(reverse("session_detail", args=[dosing.public_id])).content.decode()
    timeline = page[page.index("Dosing day timeline") :]
    order = ["Dose given", "Before the dose", "+40 min", "MOAA/S", "CADSS", "Adverse event"]
    positions = [timeline.index(text) for text in order[1:]]
    assert positions == sorted(positions)
    assert "Blood pressure 186/100 mmHg is above 180/110" in page
    assert "Ketamine 56.00 mg, Intranasal" in page
    summary = client.get(reverse("session_monitoring_summary", args=[dosing.public_id]))
    html = summary.content.decode()
    assert summary.status_code == 200
    assert (
        "Dosing monitoring summary" in html and "186/100" in html and "Not discharged yet" in html
    )
    assert "data-print" in html


@pytest.mark.shifted_clock
def test_the_dashboard_draws_vitals_with_thresholds_and_lists_adverse_events(
    client_for, people, ketamine_dosing
):
    dosing = ketamine_dosing(60)
    _vitals(people, dosing, point="pre_dose", minutes_ago=65, systolic=150, diastolic=92)
    _vitals(people, dosing, point="plus_40", minutes_ago=20)
    _serious(people, dosing)
    client = client_for(people.clinician)
    html = client.get(reverse("patient_dashboard", args=[people.patient.public_id])).content
    html = html.decode()
    assert "Vital signs and adverse events" in html
    assert "150/92" in html and "above 140/90 before the dose" in html
    assert "Fainted, taken to the emergency department" in html
    assert "Hospitalisation or longer stay" in html
    figure = json.loads(html.split('id="vitals-figure" type="application/json">')[1].split("<")[0])
    lines = [shape["y0"] for shape in figure["layout"]["shapes"]]
    assert 140 in lines and 180 in lines and 92 in lines


def bundle(*, patients, identified=False) -> dict:
    out = io.BytesIO()
    write_bundle(out, patients=patients, identified=identified)
    return json.loads(out.getvalue())


def test_the_fhir_export_validates_with_vitals_as_loinc_observations(people, ketamine_dosing):
    dosing = ketamine_dosing(60)
    _vitals(people, dosing, point="pre_dose", respiratory_rate=14, temperature_c=36.8)
    data = bundle(patients=Patient.objects.all())
    Bundle.model_validate(data)
    observations = [
        e["resource"]
        for e in data["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and e["resource"]["category"][0]["coding"][0]["code"] == "vital-signs"
    ]
    codes = {o["code"]["coding"][0]["code"] for o in observations}
    assert codes == {"85354-9", "8867-4", "59408-5", "9279-1", "8310-5"}
    bp = next(o for o in observations if o["code"]["coding"][0]["code"] == "85354-9")
    parts = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in bp["component"]}
    assert parts["8480-6"]["value"] == 128 and parts["8480-6"]["code"] == "mm[Hg]"
    assert "effectiveDateTime" not in bp  # de-identified: no dates
    assert "pseudonym" in bp["subject"]["identifier"]["system"]
    identified = bundle(patients=Patient.objects.all(), identified=True)
    Bundle.model_validate(identified)


def test_the_program_page_gives_adverse_event_rates_per_dosing(client_for, people, ketamine_dosing):
    dosing = ketamine_dosing(130)
    _serious(people, dosing)
    session_services.discharge_record(
        actor=people.clinician,
        session=dosing,
        escort="Ambulance",
        sedation_resolved=True,
        override_note="Transferred to hospital",
    )
    session_services.session_log(
        actor=people.coach, session=dosing, status="completed", duration_minutes=150
    )
    assert Session.objects.get(pk=dosing.pk).status == "completed"
    client = client_for(people.admin)
    html = client.get(reverse("program_sessions", args=[dosing.program_id])).content.decode()
    assert "Adverse events per dosing" in html
    assert "1 of 1" in html and "95% interval (Wilson)" in html


@pytest.fixture
def adverse_events(people):
    """A program with three places (patients present at a completed dosing), two of them with
    events, and events that hold no place: an absent patient's, a cancelled dosing's. Returns
    a function that records one more event at a fresh completed dosing."""
    from sessions.models import Attendance
    from tests.factories import EnrolmentFactory
    from tests.helpers import book_session

    program = people.enrolment.program
    others = [EnrolmentFactory(program=program) for _ in range(4)]

    def dosing(enrolment, hours_ago, *, status="completed", attendance="attended"):
        session = book_session(
            enrolment, actor=people.admin, kind="dosing", hours_from_now=-hours_ago
        )
        Session.objects.filter(pk=session.pk).update(status=status)
        Attendance.objects.filter(session=session).update(status=attendance)
        return session

    def event(session, grade, *, serious=False):
        session_services.adverse_event_record(
            actor=people.clinician,
            patient=session.enrolment.patient,
            session=session,
            token=uuid.uuid4(),
            description="Headache",
            onset_at=session.scheduled_start + datetime.timedelta(minutes=30),
            grade=grade,
            relatedness="possible",
            serious=serious,
            serious_criteria=["hospitalisation"] if serious else [],
        )

    twice = dosing(people.enrolment, 30)
    event(twice, "mild")
    event(twice, "severe", serious=True)  # the same dosing: counted once in each row
    event(dosing(others[0], 40, attendance="late"), "mild")
    event(dosing(others[1], 50, attendance="absent"), "severe")  # not dosed: no place
    event(dosing(people.enrolment, 70, status="cancelled"), "severe", serious=True)
    dosing(others[2], 60)  # no event
    return lambda grade, **extra: event(dosing(others[3], 80), grade, **extra)


def _counts(rates):
    return {rate.label: (rate.dosings_with, rate.dosings) for rate in rates}


COUNTED = {"Any adverse event": (2, 3), "Moderate or worse": (1, 3), "Serious": (1, 3)}


def test_adverse_event_rates_count_each_present_patient_at_a_completed_dosing_once(
    people, adverse_events
):
    from alliance.selectors import adverse_event_rates

    assert _counts(adverse_event_rates(program=people.enrolment.program)) == COUNTED


def test_the_stored_adverse_event_tally_agrees_with_the_live_count(people, adverse_events):
    from alliance import selectors
    from alliance.models import AdverseEventTally
    from clinic.models import Program
    from tests.factories import ProgramFactory

    ProgramFactory()  # a program without dosings is counted too: zero of zero
    assert services.adverse_event_tallies_refresh() == Program.objects.count()
    for program in Program.objects.all():
        stored = AdverseEventTally.objects.get(program=program)
        live = selectors.adverse_event_tally(program=program)
        assert {name: getattr(stored, name) for name in live} == live
        shown = selectors.program_adverse_events(program=program)
        assert shown.counted_at == stored.counted_at
        assert shown.rates == selectors.adverse_event_rates(program=program)
    shown = selectors.program_adverse_events(program=people.enrolment.program)
    assert _counts(shown.rates) == COUNTED


def test_the_program_page_reads_a_recent_tally_and_counts_afresh_when_it_is_old(
    client_for, people, adverse_events
):
    from alliance import selectors
    from alliance.models import AdverseEventTally

    program = people.enrolment.program
    services.adverse_event_tallies_refresh()
    adverse_events("moderate", serious=True)  # after the count: shown at beat's next one
    now = timezone.now()
    assert _counts(selectors.program_adverse_events(program=program, now=now).rates) == COUNTED
    html = client_for(people.admin).get(reverse("program_sessions", args=[program.pk]))
    html = html.content.decode()
    assert "<td>2 of 3</td>" in html and "<td>3 of 4</td>" not in html
    later = {"Any adverse event": (3, 4), "Moderate or worse": (2, 4), "Serious": (2, 4)}
    # Beat stopped: a tally older than a quarter of an hour is not shown.
    stale = now + selectors.ADVERSE_EVENT_TALLY_FRESH + datetime.timedelta(seconds=1)
    shown = selectors.program_adverse_events(program=program, now=stale)
    assert _counts(shown.rates) == later and shown.counted_at == stale
    AdverseEventTally.objects.all().delete()  # never counted (a new installation)
    assert _counts(selectors.program_adverse_events(program=program).rates) == later
    services.adverse_event_tallies_refresh()
    assert _counts(selectors.program_adverse_events(program=program).rates) == later


def test_beat_counts_adverse_events_every_five_minutes(db):
    from django_celery_beat.models import PeriodicTask

    from alliance.tasks import count_adverse_events
    from clinic.models import Program

    task = PeriodicTask.objects.get(task="alliance.count_adverse_events")
    assert task.enabled and (task.interval.every, task.interval.period) == (5, "minutes")
    assert count_adverse_events() == Program.objects.count()
