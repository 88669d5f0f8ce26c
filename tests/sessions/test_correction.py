"""A logged session is not logged again: changing what was logged is a correction, with a
reason, and the previous values are kept in the audit log."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from clinic.models import AuditEvent
from sessions import services
from sessions.models import Session

pytestmark = pytest.mark.django_db


@pytest.fixture
def completed(people, past_session):
    services.session_log(
        actor=people.coach,
        session=past_session,
        status="completed",
        duration_minutes=55,
        notes="Went well",
    )
    return Session.objects.get(pk=past_session.pk)


def test_a_completed_session_cannot_be_logged_again_as_cancelled(people, completed):
    with pytest.raises(ValidationError) as refused:
        services.session_log(
            actor=people.coach, session=completed, status="cancelled", notes="Oops"
        )
    assert "already logged as completed" in str(refused.value)
    completed.refresh_from_db()
    assert (completed.status, completed.duration_minutes) == ("completed", 55)


def test_the_same_log_sent_twice_is_one_log(people, completed):
    again = services.session_log(
        actor=people.coach,
        session=completed,
        status="completed",
        duration_minutes=55,
        notes="Went well",
    )
    assert again.duration_minutes == 55
    logs = AuditEvent.objects.filter(object_id=str(completed.public_id), action="update")
    assert logs.count() == 1


def test_a_correction_needs_a_reason_and_changes_nothing_without_one(people, completed):
    with pytest.raises(ValidationError) as refused:
        services.session_correct(
            actor=people.coach,
            session=completed,
            status="cancelled",
            duration_minutes=None,
            notes="Patient called off",
            reason="  ",
        )
    assert "reason" in refused.value.message_dict
    completed.refresh_from_db()
    assert (completed.status, completed.duration_minutes) == ("completed", 55)


def test_a_correction_keeps_the_previous_values(people, completed):
    services.session_correct(
        actor=people.clinician,
        session=completed,
        status="cancelled",
        duration_minutes=None,
        notes="Patient called off",
        reason="Logged the wrong session",
    )
    completed.refresh_from_db()
    assert completed.status == "cancelled" and completed.duration_minutes is None
    assert completed.status_reason == "Patient called off"
    assert completed.attendances.get().status == "cancelled"
    event = AuditEvent.objects.get(object_id=str(completed.public_id), detail__corrected=True)
    assert event.actor == people.clinician and event.patient == people.patient
    assert event.detail["reason"] == "Logged the wrong session"
    assert event.detail["before"]["status"] == "completed"
    assert event.detail["before"]["duration_minutes"] == 55
    assert event.detail["before"]["notes"] == "Went well"
    assert event.detail["before"]["attendance"] == {str(people.patient.pk): "attended"}
    assert event.detail["after"]["status"] == "cancelled"
    assert event.detail["after"]["duration_minutes"] is None


def test_a_correction_follows_the_logging_rules(people, completed):
    with pytest.raises(ValidationError) as refused:
        services.session_correct(
            actor=people.coach,
            session=completed,
            status="completed",
            duration_minutes=None,
            notes="",
            reason="Duration was wrong",
        )
    assert "duration_minutes" in refused.value.message_dict


def test_a_correction_that_changes_nothing_is_refused(people, completed):
    with pytest.raises(ValidationError, match="Nothing was changed"):
        services.session_correct(
            actor=people.coach,
            session=completed,
            status="completed",
            duration_minutes=55,
            notes="Went well",
            reason="Checking",
        )


def test_a_scheduled_session_is_logged_not_corrected(people, past_session):
    with pytest.raises(ValidationError, match="not logged yet"):
        services.session_correct(
            actor=people.coach,
            session=past_session,
            status="completed",
            duration_minutes=60,
            notes="",
            reason="Early",
        )


def test_the_log_page_of_a_logged_session_offers_the_correction(people, completed, client_for):
    client = client_for(people.coach)
    html = client.get(reverse("session_log", args=[completed.public_id])).content.decode()
    assert "already logged as <strong>completed</strong>" in html
    assert reverse("session_correct", args=[completed.public_id]) in html
    assert 'name="duration_minutes"' not in html  # no second log form
    detail = client.get(reverse("session_detail", args=[completed.public_id])).content.decode()
    assert reverse("session_correct", args=[completed.public_id]) in detail


def test_a_coach_corrects_the_log_on_the_page(people, completed, client_for):
    client = client_for(people.coach)
    url = reverse("session_correct", args=[completed.public_id])
    form = client.get(url).content.decode()
    assert 'value="55"' in form  # filled in with what was logged
    refused = client.post(url, {"status": "completed", "duration_minutes": 90, "notes": "x"})
    assert "reason" in refused.context["form"].errors
    completed.refresh_from_db()
    assert completed.duration_minutes == 55
    done = client.post(
        url,
        {"status": "completed", "duration_minutes": 90, "notes": "x", "reason": "Ran over"},
    )
    assert done.status_code == 302
    completed.refresh_from_db()
    assert completed.duration_minutes == 90


def test_only_those_who_may_log_may_correct(people, completed, client_for):
    url = reverse("session_correct", args=[completed.public_id])
    assert client_for(people.other_coach).get(url).status_code == 404
    assert client_for(people.clinician).get(url).status_code == 200
    detail = reverse("session_detail", args=[completed.public_id])
    assert client_for(people.other_coach).get(detail).status_code == 404


def test_the_log_form_of_a_logged_session_refuses_a_different_log(people, completed, client_for):
    client = client_for(people.coach)
    response = client.post(
        reverse("session_log", args=[completed.public_id]),
        {"status": "cancelled", "notes": "Called off"},
    )
    assert response.status_code == 200
    assert "already logged as completed" in response.content.decode()
    completed.refresh_from_db()
    assert (completed.status, completed.duration_minutes) == ("completed", 55)
