"""Nothing is left open out of sight: the flag worklist, withdrawal and the sweeps."""

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from alliance import flag_inputs, selectors, services
from alliance.models import Flag, StalePatient
from clinic import services as clinic_services
from clinic.models import AuditEvent, Patient
from outcomes import services as outcome_services
from sessions import services as session_services
from tests.factories import CoachAssignmentFactory, EnrolmentFactory

pytestmark = pytest.mark.django_db


def _phq9(people, answers, *, days_ago=1, patient=None):
    return outcome_services.response_record(
        actor=people.coach,
        patient=patient or people.patient,
        version=outcome_services.latest_version("phq-9"),
        answers=answers,
        administered_at=timezone.now() - datetime.timedelta(days=days_ago),
        allow_incomplete=True,
    )


def _safety_flag(people, patient=None):
    _phq9(people, {n: (2 if n == 9 else 1) for n in range(1, 10)}, patient=patient)
    services.recompute_patient(patient_id=(patient or people.patient).pk)
    return Flag.objects.get(kind="safety", patient=patient or people.patient)


def test_a_completed_patients_safety_flag_is_on_the_clinicians_worklist(people, client):
    flag = _safety_flag(people)
    Patient.objects.filter(pk=people.patient.pk).update(status="completed")
    client.force_login(people.clinician)
    assert "Pat Example" not in client.get(reverse("home")).content.decode()
    html = client.get(reverse("flag_worklist")).content.decode()
    assert "Pat Example" in html and str(flag.public_id) in html
    assert "Completed" in html
    # The navigation counts it, and says it is about safety.
    assert "1 about safety" in html


@pytest.mark.shifted_clock
def test_worklist_puts_safety_first_then_the_nearest_dosing(people, rate, dosing_in):
    dosing_in(5)
    rate(bond=2)
    services.recompute_patient(patient_id=people.patient.pk)
    safety = _safety_flag(people)
    kinds = [f.kind for f in selectors.flag_worklist(user=people.clinician)]
    assert kinds[0] == "safety" and safety.kind == "safety"
    assert "weak_bond" in kinds


def test_worklist_filters_by_kind_program_and_coach(people, rate, dosing_in, client):
    _safety_flag(people)
    other = EnrolmentFactory(patient__first_name="Olga", patient__last_name="Other")
    CoachAssignmentFactory(enrolment=other, coach=people.other_coach)
    _safety_flag(people, patient=other.patient)
    client.force_login(people.clinician)
    url = reverse("flag_worklist")
    both = client.get(url).content.decode()
    assert "Pat Example" in both and "Olga Other" in both
    by_coach = client.get(url, {"coach": people.other_coach.pk}).content.decode()
    assert "Olga Other" in by_coach and "Pat Example" not in by_coach
    by_program = client.get(url, {"program": people.enrolment.program.pk}).content.decode()
    assert "Pat Example" in by_program and "Olga Other" not in by_program
    by_kind = client.get(url, {"kind": "weak_bond"}).content.decode()
    assert "No open flag matches these filters." in by_kind
    # Nonsense in the query string is ignored, not an error.
    assert client.get(url, {"coach": "abc", "program": "9999999"}).status_code == 200


def test_a_coach_sees_only_their_own_patients_flags(people, client):
    _safety_flag(people)
    client.force_login(people.other_coach)
    html = client.get(reverse("flag_worklist")).content.decode()
    assert "Pat Example" not in html and "No open flags." in html
    client.force_login(people.coach)
    assert "Pat Example" in client.get(reverse("flag_worklist")).content.decode()


@pytest.mark.shifted_clock
def test_withdrawal_cancels_the_dosing_audits_it_and_clears_its_flags(people, rate, dosing_in):
    dosing = dosing_in(5)
    rate(bond=2)
    services.recompute_patient(patient_id=people.patient.pk)
    assert Flag.objects.filter(kind="weak_bond", status="open").exists()
    clinic_services.patient_change_status(
        actor=people.admin, patient=people.patient, to_status="withdrawn", reason="Moved away"
    )
    dosing.refresh_from_db()
    assert dosing.status == "cancelled"
    audited = AuditEvent.objects.filter(object_id=str(dosing.public_id), detail__status="cancelled")
    assert audited.get().actor == people.admin
    # The worker's recompute (queued on commit) clears the flag with the reason.
    services.recompute_patient(patient_id=people.patient.pk)
    flag = Flag.objects.get(kind="weak_bond")
    assert flag.status == "auto_resolved"
    assert flag.resolution_note == "The dosing was cancelled: Moved away."


def test_withdrawal_marks_the_patients_flags_stale_in_the_same_transaction(people, dosing_in):
    dosing_in(5)
    StalePatient.objects.all().delete()
    clinic_services.patient_change_status(
        actor=people.admin, patient=people.patient, to_status="withdrawn", reason="Moved"
    )
    assert StalePatient.objects.filter(patient=people.patient).exists()


@pytest.mark.shifted_clock
def test_a_cancelled_dosings_flag_clears_with_the_reason(people, rate, dosing_in):
    dosing = dosing_in(5)
    rate(bond=2)
    services.recompute_patient(patient_id=people.patient.pk)
    session_services.session_cancel(actor=people.admin, session=dosing, reason="Patient unwell")
    services.recompute_patient(patient_id=people.patient.pk)
    flag = Flag.objects.get(kind="weak_bond")
    assert (flag.status, flag.resolution_note) == (
        "auto_resolved",
        "The dosing was cancelled: Patient unwell.",
    )


def test_the_nightly_sweep_reaches_patients_out_of_care_with_open_flags(people):
    _safety_flag(people)
    Patient.objects.filter(pk=people.patient.pk).update(status="completed")
    assert people.patient.pk in flag_inputs.patients_to_sweep_ids()


def test_a_skipped_safety_item_raises_its_own_flag(people):
    response = _phq9(people, {n: (None if n == 9 else 2) for n in range(1, 10)})
    response.refresh_from_db()
    assert response.safety_unanswered == [9]
    assert response.scores.get(scale="total").value is not None  # still prorated
    services.recompute_patient(patient_id=people.patient.pk)
    flag = Flag.objects.get(kind="safety_unanswered")
    assert flag.severity == "high" and flag.status == "open"
    summary = selectors.flag_summary(flag)
    assert "PHQ-9 item 9 left unanswered" in summary and "prorated total" in summary
    # Resolved by someone who asked: not raised again for the same response.
    services.flag_resolve(actor=people.clinician, flag=flag, note="Asked: no thoughts of harm.")
    services.recompute_patient(patient_id=people.patient.pk)
    assert not Flag.objects.filter(kind="safety_unanswered", status="open").exists()


def test_a_skipped_safety_item_answered_in_a_later_questionnaire_clears(people):
    _phq9(people, {n: (None if n == 9 else 2) for n in range(1, 10)}, days_ago=10)
    flag = Flag.objects.get(kind="safety_unanswered")  # raised with the answers
    _phq9(people, {n: (0 if n == 9 else 2) for n in range(1, 10)}, days_ago=3)
    services.recompute_patient(patient_id=people.patient.pk)  # the worker, after commit
    flag.refresh_from_db()
    assert flag.status == "auto_resolved"
    assert flag.resolution_note == "The safety item was answered in a later questionnaire."
