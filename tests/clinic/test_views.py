import datetime
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from clinic.models import AuditEvent, CoachAssignment, Enrolment, Patient
from tests.factories import EnrolmentFactory, PatientFactory, ProgramFactory
from tests.helpers import assert_role_answer, matrix_cases

pytestmark = pytest.mark.django_db


# page -> expected status per persona (302 for anonymous is a redirect to the login page).
MATRIX = {
    "home": [302, 200, 200, 200, 200],
    "patient_list": [302, 200, 200, 200, 200],
    "patient_create": [302, 403, 403, 200, 200],
    "patient_detail": [302, 200, 404, 200, 200],
    "patient_edit": [302, 403, 404, 200, 200],
    "patient_status": [302, 403, 404, 200, 200],
    "patient_enrol": [302, 403, 404, 403, 200],
    "assignment_create": [302, 403, 404, 403, 200],
    "assignment_reassign": [302, 403, 404, 403, 200],
    "assignment_end": [302, 403, 404, 403, 200],
    "password_change": [302, 200, 200, 200, 200],
}


def _without_csrf(html: bytes) -> bytes:
    return re.sub(rb'name="csrfmiddlewaretoken" value="[^"]+"', b"", html)


def _url(name, people):
    patient_id = people.patient.public_id
    assignment = people.enrolment.assignments.get()
    kwargs = {
        "home": {},
        "patient_list": {},
        "patient_create": {},
        "password_change": {},
        "assignment_create": {"public_id": patient_id, "enrolment_id": people.enrolment.pk},
        "assignment_reassign": {"public_id": patient_id, "assignment_id": assignment.pk},
        "assignment_end": {"public_id": patient_id, "assignment_id": assignment.pk},
    }.get(name, {"public_id": patient_id})
    return reverse(name, kwargs=kwargs)


@pytest.mark.parametrize(("page", "persona", "expected"), matrix_cases(MATRIX))
def test_role_matrix(client, people, page, persona, expected):
    assert_role_answer(client, people, persona, _url(page, people), expected)


def test_unknown_patient_and_other_coachs_patient_look_the_same(client_for, people):
    client = client_for(people.other_coach)
    hidden = client.get(reverse("patient_detail", args=[people.patient.public_id]))
    missing = client.get(reverse("patient_detail", args=["00000000-0000-0000-0000-000000000000"]))
    assert hidden.status_code == missing.status_code == 404
    assert _without_csrf(hidden.content) == _without_csrf(missing.content)


def test_coach_caseload_lists_only_their_patients(client_for, people):
    PatientFactory(first_name="Nobody", last_name="Else")
    page = client_for(people.coach).get(reverse("home")).content.decode()
    assert "Pat Example" in page
    assert "Nobody Else" not in page


def test_coach_without_patients_sees_an_empty_state(client_for, people):
    page = client_for(people.other_coach).get(reverse("home")).content.decode()
    assert "No patients are assigned to you yet" in page


def test_caseload_search_and_pagination_for_clinicians(client_for, people):
    for n in range(30):
        PatientFactory(last_name=f"Zed{n:02d}", record_number=f"ZZ-{n:02d}")
    client = client_for(people.clinician)
    first = client.get(reverse("home")).content.decode()
    assert "Page 1 of 2" in first
    found = client.get(reverse("home"), {"q": "zz-07"}).content.decode()
    assert "Zed07" in found and "Zed08" not in found


def test_patient_list_filters_by_status(client_for, people):
    PatientFactory(last_name="Gone", status="withdrawn", withdrawal_reason="Moved")
    client = client_for(people.clinician)
    page = client.get(reverse("patient_list"), {"status": "withdrawn"}).content.decode()
    assert "Gone" in page and "Pat Example" not in page


def test_viewing_a_patient_is_audited(client_for, people):
    client_for(people.coach).get(reverse("patient_detail", args=[people.patient.public_id]))
    event = AuditEvent.objects.get(action="view")
    assert (event.actor, event.patient) == (people.coach, people.patient)


def test_refused_view_is_not_audited_as_a_view(client_for, people):
    client_for(people.other_coach).get(reverse("patient_detail", args=[people.patient.public_id]))
    assert not AuditEvent.objects.filter(action="view").exists()


def test_patient_detail_shows_coach_history(client_for, people):
    old = people.enrolment.assignments.get()
    old.end_date = timezone.localdate()
    old.save()
    CoachAssignment.objects.create(
        enrolment=people.enrolment,
        coach=people.other_coach,
        role="lead",
        start_date=timezone.localdate(),
        assigned_by=people.admin,
    )
    page = client_for(people.clinician).get(
        reverse("patient_detail", args=[people.patient.public_id])
    )
    html = page.content.decode()
    assert "Cora Coach" in html and "Otto Othercoach" in html and "current" in html


# --- forms: bad input is refused next to the field, keeps what was typed, writes nothing ----


def _create_payload(**overrides):
    data = {
        "record_number": "RP-NEW",
        "first_name": "Nia",
        "last_name": "Typed",
        "date_of_birth": "1990-04-02",
        "email": "nia@example.invalid",
        "phone": "",
    }
    data.update(overrides)
    return data


def test_register_patient_then_lands_on_the_record(client_for, people):
    response = client_for(people.clinician).post(reverse("patient_create"), _create_payload())
    patient = Patient.objects.get(record_number="RP-NEW")
    assert response.status_code == 302
    assert response.url == reverse("patient_detail", args=[patient.public_id])


def test_duplicate_record_number_reshows_the_form_with_the_typed_values(client_for, people):
    payload = _create_payload(record_number=people.patient.record_number.lower())
    before = Patient.objects.count()
    response = client_for(people.clinician).post(reverse("patient_create"), payload)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Another patient already has this record number." in html
    assert 'value="Typed"' in html and 'value="nia@example.invalid"' in html
    assert Patient.objects.count() == before


def test_future_date_of_birth_is_refused_in_the_form(client_for, people):
    tomorrow = (timezone.localdate() + datetime.timedelta(days=1)).isoformat()
    response = client_for(people.admin).post(
        reverse("patient_create"), _create_payload(date_of_birth=tomorrow)
    )
    assert "cannot be in the future" in response.content.decode()
    assert not Patient.objects.filter(record_number="RP-NEW").exists()


def test_double_submit_makes_one_patient(client_for, people):
    client = client_for(people.clinician)
    client.post(reverse("patient_create"), _create_payload())
    second = client.post(reverse("patient_create"), _create_payload())
    assert second.status_code == 200
    assert Patient.objects.filter(record_number="RP-NEW").count() == 1


def test_edit_patient_keeps_typed_values_on_error(client_for, people):
    PatientFactory(record_number="RP-TAKEN")
    url = reverse("patient_edit", args=[people.patient.public_id])
    payload = _create_payload(record_number="RP-TAKEN", first_name="Changed")
    response = client_for(people.admin).post(url, payload)
    assert 'value="Changed"' in response.content.decode()
    people.patient.refresh_from_db()
    assert people.patient.first_name == "Pat"


def test_date_pickers_show_their_dates_as_browsers_read_them(client_for, people):
    """A date input with any value but yyyy-mm-dd shows empty, so an edit would blank it."""
    client = client_for(people.admin)
    edit = client.get(reverse("patient_edit", args=[people.patient.public_id])).content.decode()
    assert 'type="date" name="date_of_birth" value="1985-06-01"' in edit
    enrol = client.get(reverse("patient_enrol", args=[people.patient.public_id])).content.decode()
    today = timezone.localdate().isoformat()
    assert f'type="date" name="start_date" value="{today}"' in enrol


def test_impossible_status_is_not_offered_and_refused_if_forced(client_for, people):
    url = reverse("patient_status", args=[people.patient.public_id])
    client = client_for(people.clinician)
    form_html = client.get(url).content.decode()
    assert 'value="completed"' not in form_html
    response = client.post(url, {"to_status": "completed", "reason": ""})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    people.patient.refresh_from_db()
    assert people.patient.status == "referred"


def test_withdrawal_without_reason_shows_the_message_next_to_the_field(client_for, people):
    url = reverse("patient_status", args=[people.patient.public_id])
    response = client_for(people.clinician).post(url, {"to_status": "withdrawn", "reason": ""})
    assert "Say why the patient is withdrawing." in response.content.decode()


def test_enrolling_into_a_full_group_shows_a_message(client_for, people):
    group = ProgramFactory(kind="group", capacity=1, name="Full circle")
    EnrolmentFactory(program=group)
    response = client_for(people.admin).post(
        reverse("patient_enrol", args=[people.patient.public_id]),
        {"program": group.pk, "start_date": timezone.localdate().isoformat()},
    )
    assert "This group is full" in response.content.decode()
    assert not Enrolment.objects.filter(patient=people.patient, program=group).exists()


def test_second_active_lead_shows_a_message(client_for, people):
    response = client_for(people.admin).post(
        reverse("assignment_create", args=[people.patient.public_id, people.enrolment.pk]),
        {
            "coach": people.other_coach.pk,
            "role": "lead",
            "start_date": timezone.localdate().isoformat(),
        },
    )
    assert "already has an active lead coach" in response.content.decode()
    assert people.enrolment.assignments.count() == 1


def test_reassign_through_the_page_keeps_history(client_for, people):
    assignment = people.enrolment.assignments.get()
    response = client_for(people.admin).post(
        reverse("assignment_reassign", args=[people.patient.public_id, assignment.pk]),
        {"coach": people.other_coach.pk, "start_date": timezone.localdate().isoformat()},
    )
    assert response.status_code == 302
    assert people.enrolment.assignments.count() == 2
    assert people.enrolment.assignments.filter(end_date__isnull=True).get().coach == (
        people.other_coach
    )


@pytest.mark.shifted_clock
@pytest.mark.parametrize("how", ["assign", "reassign"])
def test_the_page_names_and_links_the_sessions_the_new_coach_cannot_facilitate(
    client_for, people, clash, how
):
    if how == "assign":
        url = reverse("assignment_create", args=[people.patient.public_id, people.enrolment.pk])
        data = {"coach": people.other_coach.pk, "role": "preparation"}
    else:
        assignment = people.enrolment.assignments.get()
        url = reverse("assignment_reassign", args=[people.patient.public_id, assignment.pk])
        data = {"coach": people.other_coach.pk}
    data["start_date"] = timezone.localdate().isoformat()
    response = client_for(people.admin).post(url, data, follow=True)
    assert response.redirect_chain[-1][0] == reverse(
        "patient_detail", args=[people.patient.public_id]
    )
    html = response.content.decode()
    saved = "Otto Othercoach is now preparation." if how == "assign" else "takes over"
    assert saved in re.search(r'<div class="alert alert-success"[^>]*>(.*?)</div>', html)[1]
    warning = re.search(r'<div class="alert alert-warning"[^>]*>(.*?)</div>', html, re.S)
    assert "Otto Othercoach is not facilitator of this session, which clashes" in warning[1]
    link = reverse("session_detail", args=[clash.clashing.public_id])
    when = timezone.localtime(clash.clashing.scheduled_start)
    assert re.search(
        rf'<a href="{link}">Preparation &lt;b&gt;1&lt;/b&gt;</a> \(preparation\), '
        rf"{when:%a} {when.day} {when:%b %Y}, 10:00",
        warning[1],
    )
    assert reverse("session_detail", args=[clash.free.public_id]) not in warning[1]
    event = AuditEvent.objects.get(action="assign", actor=people.admin)
    assert event.detail["not_facilitating"] == [str(clash.clashing.public_id)]


def test_reassigning_hands_the_patient_to_the_new_coach(client_for, people, client):
    assignment = people.enrolment.assignments.get()
    client_for(people.admin).post(
        reverse("assignment_reassign", args=[people.patient.public_id, assignment.pk]),
        {"coach": people.other_coach.pk, "start_date": timezone.localdate().isoformat()},
    )
    url = reverse("patient_detail", args=[people.patient.public_id])
    client.force_login(people.coach)
    assert client.get(url).status_code == 404
    client.force_login(people.other_coach)
    assert client.get(url).status_code == 200


def test_a_service_error_without_a_field_is_shown_once_above_the_form(client_for, people):
    assignment = people.enrolment.assignments.get()
    assignment.end_date = timezone.localdate()
    assignment.save()
    response = client_for(people.admin).post(
        reverse("assignment_end", args=[people.patient.public_id, assignment.pk]),
        {"end_date": timezone.localdate().isoformat()},
    )
    assert response.content.decode().count("This assignment has already ended.") == 1


@pytest.mark.parametrize("page", ["patient_timeline", "patient_flags"])
def test_viewing_other_parts_of_the_record_is_audited(client_for, people, page):
    client_for(people.clinician).get(reverse(page, args=[people.patient.public_id]))
    event = AuditEvent.objects.get(action="view")
    assert (event.actor, event.patient) == (people.clinician, people.patient)


# --- scores on the patient page, as clinicians read them ----------------------------------


def _text(html: str) -> str:
    return re.sub(r" ,", ",", re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def _answered(people, code, answers):
    from outcomes import services as outcome_services

    return outcome_services.response_record(
        actor=people.coach,
        patient=people.patient,
        version=outcome_services.latest_version(code),
        answers=answers,
        administered_at=timezone.now(),
    )


def test_the_patient_page_shows_each_primary_score_never_an_item_mean_as_total(client, people):
    _answered(people, "phq-9", {n: 2 for n in range(1, 8)} | {8: 1, 9: 1})  # 14 + 2 = 16
    _answered(people, "srs", {1: 8.1, 2: 8.2, 3: 8.1, 4: 8.2})  # 32.6 (item mean 8.15)
    _answered(people, "wai-sr", {n: 4 for n in range(1, 13)} | {3: 3, 5: 3})  # bond 3.5
    client.force_login(people.clinician)
    html = client.get(reverse("patient_detail", args=[people.patient.public_id])).content.decode()
    text = _text(html)
    assert re.search(r"PHQ-9 [^·]*Total 16 sum, Moderately severe", text)
    assert "SRS Total 32.6 sum" in text
    assert "Bond 3.5 mean" in text and "Total 3.83 mean" in text
    assert "1.78" not in text and "8.15" not in text  # the PHQ-9 and SRS item means
    assert "total 1.78" not in text.lower()


def test_the_patient_page_marks_a_prorated_total_and_an_unanswered_safety_item(client, people):
    # 7 answered summing 11, items 8 and 9 skipped: 11/7 x 9 = 14.14 -> 14
    _answered(people, "phq-9", {1: 2, 2: 2, 3: 2, 4: 2, 5: 1, 6: 1, 7: 1, 8: None, 9: None})
    client.force_login(people.coach)
    html = client.get(reverse("patient_detail", args=[people.patient.public_id])).content.decode()
    text = _text(html)
    assert "Total 14 sum prorated, Moderate" in text
    assert "14.1" not in text
    assert "Item 9 (Thoughts of death or self-harm) was not answered: ask the patient." in text
