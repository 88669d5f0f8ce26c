"""The measurement plan: what is due after a session, what is overdue for a patient."""

import datetime
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from outcomes import selectors, services
from outcomes.selectors import unanswered_codes
from sessions import services as session_services
from sessions.models import ProtocolStep, Session
from tests.factories import CoachAssignmentFactory, EnrolmentFactory, PatientFactory

pytestmark = pytest.mark.django_db

WAI = {n: 4 for n in range(1, 13)}
SRS = {1: 9, 2: 9, 3: 9, 4: 9}


def _answer(people, session, code, answers, patient=None):
    return services.response_record(
        actor=people.coach,
        patient=patient or people.patient,
        version=services.latest_version(code),
        answers=answers,
        administered_at=timezone.now(),
        session=session,
    )


def _age(session, days: float):
    """Move a logged session so that it ended `days` ago."""
    end = timezone.now() - datetime.timedelta(days=days)
    Session.objects.filter(pk=session.pk).update(
        scheduled_start=end - datetime.timedelta(hours=1), scheduled_end=end
    )


@pytest.mark.shifted_clock
def test_due_is_the_steps_codes_minus_what_is_answered_for_the_session(people, completed_session):
    assert unanswered_codes(completed_session) == ["wai-sr", "srs"]
    _answer(people, completed_session, "wai-sr", WAI)
    assert unanswered_codes(completed_session) == ["srs"]
    assert unanswered_codes(completed_session, patient=people.patient) == ["srs"]
    _answer(people, completed_session, "srs", SRS)
    assert unanswered_codes(completed_session) == []


def test_an_answer_not_linked_to_the_session_does_not_count(people, completed_session):
    _answer(people, None, "wai-sr", WAI)
    assert unanswered_codes(completed_session) == ["wai-sr", "srs"]


def test_a_session_without_a_protocol_step_has_nothing_due(people, completed_session):
    Session.objects.filter(pk=completed_session.pk).update(protocol_step=None)
    completed_session.refresh_from_db()
    assert unanswered_codes(completed_session) == []
    assert selectors.due_for_session(completed_session) == []


def test_an_answer_cannot_be_filed_under_another_patients_session(people, completed_session):
    stranger = PatientFactory()
    with pytest.raises(Exception, match="not booked for that session"):
        _answer(people, completed_session, "wai-sr", WAI, patient=stranger)


def _group_session(people):
    """A logged group preparation circle with two members who came and one who did not."""
    program = people.enrolment.program
    program.kind = "group"
    program.capacity = 8
    program.save()
    second = EnrolmentFactory(program=program, enrolled_by=people.admin)
    CoachAssignmentFactory(enrolment=second, coach=people.other_coach, assigned_by=people.admin)
    third = EnrolmentFactory(program=program, enrolled_by=people.admin)
    start = timezone.now().replace(microsecond=0) - datetime.timedelta(hours=3)
    session = session_services.session_book(
        actor=people.admin,
        program=program,
        enrolment=None,
        kind="preparation",
        start=start,
        end=start + datetime.timedelta(hours=2),
        facilitators=[people.coach, people.other_coach],
    )
    step = ProtocolStep.objects.filter(instruments_due=["wai-sr", "srs"]).first()
    Session.objects.filter(pk=session.pk).update(protocol_step=step)
    session.refresh_from_db()
    session_services.session_log(
        actor=people.coach,
        session=session,
        status="completed",
        duration_minutes=120,
        attendance={
            people.patient.pk: "attended",
            second.patient_id: "late",
            third.patient_id: "absent",
        },
    )
    return session, second.patient, third.patient


@pytest.mark.shifted_clock
def test_a_group_session_is_due_until_everyone_who_came_has_answered(people):
    session, second, _absent = _group_session(people)
    _answer(people, session, "wai-sr", WAI)
    _answer(people, session, "srs", SRS)
    assert unanswered_codes(session) == ["wai-sr", "srs"]  # the second member owes both
    assert unanswered_codes(session, patient=people.patient) == []
    _answer(people, session, "wai-sr", WAI, patient=second)
    _answer(people, session, "srs", SRS, patient=second)
    assert unanswered_codes(session) == []  # the absent member owes nothing


def test_the_group_session_page_lists_only_the_attendees_the_user_may_see(client, people):
    session, second, absent = _group_session(people)
    client.force_login(people.coach)
    html = client.get(reverse("session_detail", args=[session.public_id])).content.decode()
    assert reverse("response_new", args=[people.patient.public_id, "wai-sr"]) in html
    assert reverse("response_new", args=[second.public_id, "wai-sr"]) not in html
    assert reverse("response_new", args=[absent.public_id, "wai-sr"]) not in html
    client.force_login(people.clinician)
    html = client.get(reverse("session_detail", args=[session.public_id])).content.decode()
    assert reverse("response_new", args=[second.public_id, "wai-sr"]) in html
    assert reverse("response_new", args=[absent.public_id, "wai-sr"]) not in html


def test_the_session_page_offers_enter_then_the_scores(client, people, completed_session):
    client.force_login(people.coach)
    url = reverse("session_detail", args=[completed_session.public_id])
    html = client.get(url).content.decode()
    assert html.count(">Enter<") == 2
    assert reverse("link_new", args=[people.patient.public_id]) in html
    response = _answer(people, completed_session, "srs", SRS)
    html = client.get(url).content.decode()
    assert html.count(">Enter<") == 1
    assert reverse("response_detail", args=[response.public_id]) in html


def test_a_link_from_the_session_page_preselects_what_is_still_due(
    client, people, completed_session
):
    _answer(people, completed_session, "srs", SRS)
    client.force_login(people.coach)
    url = reverse("link_new", args=[people.patient.public_id])
    html = client.get(f"{url}?session={completed_session.public_id}").content.decode()
    assert re.search(r'<input[^>]*value="wai-sr"[^>]*checked', html)
    assert not re.search(r'<input[^>]*value="srs"[^>]*checked', html)


@pytest.mark.shifted_clock
def test_overdue_counts_wait_for_the_grace_period_and_stop_when_missed(
    people, completed_session, settings
):
    ids = [people.patient.pk]
    assert selectors.overdue_counts(patient_ids=ids) == {}  # ended 2 hours ago
    _age(completed_session, 3)
    assert selectors.overdue_counts(patient_ids=ids) == {people.patient.pk: 2}
    _answer(people, completed_session, "wai-sr", WAI)
    assert selectors.overdue_counts(patient_ids=ids) == {people.patient.pk: 1}
    _age(completed_session, settings.QUESTIONNAIRE_MISSED_AFTER_DAYS + 1)
    assert selectors.overdue_counts(patient_ids=ids) == {}  # missed, no longer overdue


def test_no_show_and_cancelled_sessions_owe_nothing(people, completed_session):
    _age(completed_session, 3)
    Session.objects.filter(pk=completed_session.pk).update(status="no_show")
    assert selectors.overdue_counts(patient_ids=[people.patient.pk]) == {}


@pytest.mark.shifted_clock
def test_overdue_for_a_patient_lists_each_measure_with_its_session(people, completed_session):
    _age(completed_session, 3)
    overdue = selectors.overdue_for(patient=people.patient)
    assert [row["instrument"].code for row in overdue] == ["wai-sr", "srs"]
    assert overdue[0]["session"] == completed_session


def test_clinician_rated_measures_are_not_counted_on_the_caseload(people, completed_session):
    step = completed_session.protocol_step
    step.instruments_due = ["grid-hamd-17"]
    step.save()
    _age(completed_session, 3)
    assert selectors.overdue_counts(patient_ids=[people.patient.pk]) == {}
    assert [r["instrument"].code for r in selectors.overdue_for(patient=people.patient)] == [
        "grid-hamd-17"
    ]


def test_overdue_counts_take_three_queries_for_any_number_of_patients(
    people, completed_session, django_assert_num_queries
):
    _age(completed_session, 3)
    ids = [people.patient.pk, PatientFactory().pk]
    with django_assert_num_queries(3):
        selectors.overdue_counts(patient_ids=ids)
