"""The dosing day in the sessions app: vital signs (plausible, once per tap, late entry keeps
its time), adverse events with their history, and the discharge that a completed dosing
needs. Runs at the shifted hours too: a dosing an hour ago may have begun yesterday."""

import datetime
import uuid

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from clinic.models import AuditEvent
from sessions import monitoring, selectors, services
from sessions.models import AdverseEvent, Discharge, Session, VitalSigns


def _vitals(people, session, *, minutes_ago=0, point="", token=None, **values):
    reading = {"systolic": 128, "diastolic": 82, "heart_rate": 74, "spo2": 98, **values}
    return services.vitals_record(
        actor=people.coach,
        session=session,
        token=token or uuid.uuid4(),
        point=point,
        measured_at=timezone.now() - datetime.timedelta(minutes=minutes_ago),
        **reading,
    )


# --- the schedules shipped with the protocols ----------------------------------------------


def test_every_shipped_dosing_step_has_a_sourced_monitoring_schedule(db):
    from sessions.models import ProtocolStep

    steps = ProtocolStep.objects.filter(kind="dosing")
    assert steps.exists()
    for step in steps:
        assert monitoring.schedule_errors(step.monitoring) == [], step
        schedule = monitoring.schedule_from(step.monitoring)
        assert schedule.point("pre_dose") is not None
        assert any(p.discharge for p in schedule.points)
    ketamine = monitoring.schedule_from(
        steps.filter(protocol__name="Ketamine-assisted therapy series").first().monitoring
    )
    assert ketamine.observation_minutes == 120
    assert [p.after_dose_minutes for p in ketamine.points][:3] == [None, 40, 120]
    assert "REMS" in ketamine.source


# --- vital signs ---------------------------------------------------------------------------


def test_an_implausible_reading_is_refused_with_the_range_and_nothing_is_saved(
    people, ketamine_dosing
):
    dosing = ketamine_dosing(50)
    with pytest.raises(ValidationError) as refused:
        _vitals(people, dosing, systolic=1200)
    assert "between 50 and 280 mmHg" in refused.value.message_dict["systolic"][0]
    with pytest.raises(ValidationError) as refused:
        _vitals(people, dosing, spo2=9, diastolic=130, systolic=120)
    errors = refused.value.message_dict
    assert "between 50 and 100 %" in errors["spo2"][0]
    assert "lower than the systolic" in errors["diastolic"][0]
    assert not VitalSigns.objects.exists()
    assert not AuditEvent.objects.filter(object_type="clinic_sessions.vitalsigns").exists()


def test_a_double_tap_records_one_reading(people, ketamine_dosing):
    dosing = ketamine_dosing(50)
    token = uuid.uuid4()
    first = _vitals(people, dosing, token=token, point="plus_40")
    again = _vitals(people, dosing, token=token, point="plus_40")
    assert first.pk == again.pk
    assert VitalSigns.objects.count() == 1


@pytest.mark.shifted_clock
def test_a_reading_entered_late_keeps_its_measured_time_and_says_when_it_was_entered(
    people, ketamine_dosing
):
    dosing = ketamine_dosing(90)
    reading = _vitals(people, dosing, minutes_ago=45, point="plus_40")
    assert reading.entered_at - reading.measured_at >= datetime.timedelta(minutes=45)
    assert reading.entered_by == people.coach and reading.taken_by == people.coach
    from sessions.selectors import dosing_day

    entry = next(e for e in dosing_day(session=dosing).entries if e.kind == "vitals")
    assert entry.at == reading.measured_at
    assert entry.entered_late.startswith("entered ")


@pytest.mark.shifted_clock
def test_a_reading_cannot_be_in_the_future_and_only_dosings_take_vitals(people, ketamine_dosing):
    dosing = ketamine_dosing(50)
    with pytest.raises(ValidationError) as refused:
        _vitals(people, dosing, minutes_ago=-30)
    assert "future" in refused.value.message_dict["measured_at"][0]
    dosing.kind = "preparation"
    dosing.save()
    with pytest.raises(ValidationError):
        _vitals(people, dosing)
    assert not VitalSigns.objects.exists()


def test_out_of_range_readings_are_said_in_words():
    limits = monitoring.DEFAULT_LIMITS["ketamine"]
    now = timezone.now()
    before = monitoring.Reading(now, 152, 94, 80, 98, pre_dose=True)
    assert monitoring.alerts(before, limits) == [
        "Blood pressure 152/94 mmHg is above 140/90 before the dose: the prescriber must "
        "confirm before dosing"
    ]
    after = monitoring.Reading(now, 152, 94, 130, 90)
    assert monitoring.alerts(after, limits) == [
        "Heart rate 130/min is above 120/min",
        "SpO₂ 90% is below 92%",
    ]
    assert monitoring.alerts(monitoring.Reading(now, 185, 95, 80, 97), limits) == [
        "Blood pressure 185/95 mmHg is above 180/110"
    ]


def test_program_limits_replace_the_modality_defaults_and_are_audited(people):
    program = people.enrolment.program
    assert selectors.limits_for(program) == monitoring.DEFAULT_LIMITS["psilocybin"]
    services.vital_limits_update(
        actor=people.admin, program=program, pre_dose_systolic_above=150, source="Our protocol"
    )
    limits = selectors.limits_for(program)
    assert limits.pre_dose_systolic_above == 150 and limits.source == "Our protocol"
    audit = AuditEvent.objects.get(object_type="clinic_sessions.vitallimits")
    assert audit.detail["limits"]["pre_dose_systolic_above"] == {"old": 140, "new": 150}
    with pytest.raises(ValidationError):
        services.vital_limits_update(actor=people.admin, program=program, spo2_below=20)


# --- adverse events --------------------------------------------------------------------------


def _event(people, dosing=None, **values):
    return services.adverse_event_record(
        actor=people.coach,
        patient=people.patient,
        session=dosing,
        token=values.pop("token", uuid.uuid4()),
        description=values.pop("description", "Nausea after the dose"),
        onset_at=values.pop("onset_at", timezone.now() - datetime.timedelta(minutes=20)),
        grade=values.pop("grade", "mild"),
        relatedness=values.pop("relatedness", "probable"),
        **values,
    )


@pytest.mark.shifted_clock
def test_an_adverse_event_is_recorded_once_and_its_history_is_kept_on_edit(people, ketamine_dosing):
    dosing = ketamine_dosing(50)
    token = uuid.uuid4()
    event = _event(people, dosing, token=token, action_taken="Ondansetron 4 mg")
    assert _event(people, dosing, token=token).pk == event.pk  # a double submit
    assert AdverseEvent.objects.count() == 1
    updated = services.adverse_event_update(
        actor=people.clinician,
        event=event,
        reason="Resolved by the end of the session",
        outcome="recovered",
        resolved_on=timezone.localtime(event.onset_at).date(),
    )
    assert updated.is_closed
    versions = list(updated.history.order_by("history_date"))
    assert [v.outcome for v in versions] == ["ongoing", "recovered"]
    assert versions[-1].history_change_reason == "Resolved by the end of the session"
    audit = AuditEvent.objects.get(
        object_type="clinic_sessions.adverseevent", action=AuditEvent.Action.UPDATE
    )
    assert audit.detail["before"]["outcome"] == "ongoing"


@pytest.mark.shifted_clock
@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"description": " "}, "description", "Describe"),
        ({"grade": "terrible"}, "grade", "severity grade"),
        ({"serious": True}, "serious_criteria", "at least one criterion"),
        ({"serious_criteria": ["hospitalisation"]}, "serious", "tick serious"),
        ({"outcome": "recovered"}, "resolved_on", "date it resolved"),
        (
            {"onset_at": timezone.now() + datetime.timedelta(days=1)},
            "onset_at",
            "future",
        ),
    ],
)
def test_a_bad_adverse_event_is_refused_and_nothing_is_written(
    people, ketamine_dosing, values, field, message
):
    dosing = ketamine_dosing(50)
    with pytest.raises(ValidationError) as refused:
        _event(people, dosing, **values)
    assert message in " ".join(refused.value.message_dict[field])
    assert not AdverseEvent.objects.exists()


def test_a_change_to_an_adverse_event_needs_a_reason(people):
    event = _event(people)
    with pytest.raises(ValidationError) as refused:
        services.adverse_event_update(actor=people.coach, event=event, reason="", grade="moderate")
    assert "reason" in refused.value.message_dict
    event.refresh_from_db()
    assert event.grade == "mild" and event.history.count() == 1


# --- discharge -------------------------------------------------------------------------------


@pytest.mark.shifted_clock
def test_discharge_is_refused_before_the_minimum_time_and_the_dosing_cannot_be_logged(
    people, ketamine_dosing
):
    dosing = ketamine_dosing(50)
    _vitals(people, dosing, point="pre_discharge")
    with pytest.raises(ValidationError) as refused:
        services.discharge_record(
            actor=people.coach, session=dosing, escort="Partner", sedation_resolved=True
        )
    text = " ".join(refused.value.messages)
    assert "minimum observation time of 120 minutes" in text
    assert not Discharge.objects.exists()
    with pytest.raises(ValidationError) as refused:
        services.session_log(
            actor=people.coach, session=dosing, status="completed", duration_minutes=180
        )
    assert "discharge check" in refused.value.message_dict["status"][0]
    dosing.refresh_from_db()
    assert dosing.status == Session.Status.SCHEDULED


@pytest.mark.shifted_clock
def test_discharge_after_the_minimum_time_with_vitals_in_range_then_the_log(
    people, ketamine_dosing
):
    dosing = ketamine_dosing(130)
    _vitals(people, dosing, point="pre_discharge")
    discharge = services.discharge_record(
        actor=people.coach, session=dosing, escort="Partner drives", sedation_resolved=True
    )
    assert not discharge.is_override and discharge.observed_minutes >= 130
    again = services.discharge_record(
        actor=people.coach, session=dosing, escort="Partner drives", sedation_resolved=True
    )
    assert again.pk == discharge.pk
    services.session_log(
        actor=people.coach, session=dosing, status="completed", duration_minutes=180
    )
    dosing.refresh_from_db()
    assert dosing.status == Session.Status.COMPLETED
    audit = AuditEvent.objects.filter(detail__discharge="check passed").get()
    assert audit.actor == people.coach


@pytest.mark.parametrize(
    ("reading", "sedated", "escort", "problem"),
    [
        ({"systolic": 190}, False, "Taxi", "last vital signs are out of range"),
        ({}, False, "Taxi", "Sedation has not resolved"),
        ({}, True, "", "No escort or transport"),
    ],
)
def test_each_unmet_condition_is_named(people, ketamine_dosing, reading, sedated, escort, problem):
    dosing = ketamine_dosing(130)
    _vitals(people, dosing, point="pre_discharge", **reading)
    with pytest.raises(ValidationError) as refused:
        services.discharge_record(
            actor=people.coach, session=dosing, escort=escort, sedation_resolved=sedated
        )
    assert problem in " ".join(refused.value.messages)


def test_only_a_clinician_overrides_the_check_and_the_note_is_kept(people, ketamine_dosing):
    dosing = ketamine_dosing(50)
    with pytest.raises(ValidationError) as refused:
        services.discharge_record(
            actor=people.coach,
            session=dosing,
            escort="Partner",
            sedation_resolved=True,
            override_note="Wants to go",
        )
    assert "Only a clinician" in refused.value.message_dict["override_note"][0]
    discharge = services.discharge_record(
        actor=people.clinician,
        session=dosing,
        escort="Partner",
        sedation_resolved=True,
        override_note="Transferred to the emergency department by ambulance",
    )
    assert discharge.is_override
    assert any("No vital signs" in p for p in discharge.overridden)
    audit = AuditEvent.objects.get(detail__discharge="override")
    assert audit.actor == people.clinician
    assert audit.detail["note"] == "Transferred to the emergency department by ambulance"


# --- pages -----------------------------------------------------------------------------------


@pytest.mark.shifted_clock
def test_the_vitals_page_refuses_a_typo_with_the_range_and_keeps_what_was_typed(
    client_for, people, ketamine_dosing
):
    dosing = ketamine_dosing(50)
    client = client_for(people.coach)
    url = reverse("session_vitals", args=[dosing.public_id])
    page = client.get(url).content.decode()
    assert 'inputmode="numeric"' in page and "Before the dose" in page
    token = str(uuid.uuid4())
    measured = timezone.localtime().strftime("%Y-%m-%dT%H:%M")
    data = {
        "token": token,
        "point": "plus_40",
        "measured_at": measured,
        "systolic": "1200",
        "diastolic": "80",
        "heart_rate": "70",
        "spo2": "97",
    }
    response = client.post(url, data)
    html = response.content.decode()
    assert response.status_code == 200
    assert "between 50 and 280 mmHg" in html and 'value="1200"' in html
    assert not VitalSigns.objects.exists()
    response = client.post(url, {**data, "systolic": "150", "diastolic": "95"})
    assert response.status_code == 302
    client.post(url, {**data, "systolic": "150", "diastolic": "95"})  # the double tap
    assert VitalSigns.objects.count() == 1
    detail = client.get(response.url).content.decode()
    assert "Vital signs saved." in detail
    assert "BP 150/95 mmHg" in detail


def test_another_coach_cannot_reach_the_dosing_day_pages(client_for, people, ketamine_dosing):
    dosing = ketamine_dosing(50)
    client = client_for(people.other_coach)
    for name in ("session_vitals", "adverse_event_new", "session_discharge"):
        assert client.get(reverse(name, args=[dosing.public_id])).status_code == 404
    event = _event(people, dosing)
    assert client.get(reverse("adverse_event_edit", args=[event.public_id])).status_code == 404
    page = reverse("patient_adverse_event_new", args=[people.patient.public_id])
    assert client.get(page).status_code == 404


@pytest.mark.shifted_clock
def test_an_adverse_event_between_sessions_is_listed_on_the_patients_sessions_page(
    client_for, people
):
    client = client_for(people.coach)
    url = reverse("patient_adverse_event_new", args=[people.patient.public_id])
    onset = (timezone.localtime() - datetime.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(
        url,
        {
            "token": str(uuid.uuid4()),
            "description": "Headache the evening after",
            "onset_at": onset,
            "grade": "mild",
            "relatedness": "possible",
            "outcome": "ongoing",
        },
    )
    assert response.status_code == 302
    page = client.get(response.url).content.decode()
    assert "Headache the evening after" in page and "between sessions" in page


def test_a_form_token_used_at_one_dosing_is_refused_at_another(people, ketamine_dosing):
    first = ketamine_dosing(50)
    token = uuid.uuid4()
    _vitals(people, first, token=token)
    second = ketamine_dosing(400)
    with pytest.raises(ValidationError):
        _vitals(people, second, token=token)
    assert VitalSigns.objects.filter(session=second).count() == 0


def test_a_cancelled_dosing_takes_no_discharge(people, ketamine_dosing):
    dosing = ketamine_dosing(130)
    Session.objects.filter(pk=dosing.pk).update(status=Session.Status.CANCELLED)
    with pytest.raises(ValidationError):
        services.discharge_record(
            actor=people.clinician,
            session=dosing,
            escort="Taxi",
            sedation_resolved=True,
            override_note="n/a",
        )
    assert not Discharge.objects.exists()
