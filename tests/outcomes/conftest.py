import pytest

from sessions import services as session_services
from sessions.models import ProtocolStep, Session
from tests.helpers import book_session


@pytest.fixture
def completed_session(people):
    """A preparation session that ended two hours ago, logged, with WAI-SR and SRS due;
    the patient agreed to questionnaires by e-mail."""
    people.patient.email_consent = True
    people.patient.save()
    session = book_session(
        people.enrolment, actor=people.admin, hours_from_now=-3, facilitators=[people.coach]
    )
    step = ProtocolStep.objects.filter(instruments_due=["wai-sr", "srs"]).first()
    Session.objects.filter(pk=session.pk).update(protocol_step=step)
    session.refresh_from_db()
    session_services.session_log(
        actor=people.coach, session=session, status=Session.Status.COMPLETED, duration_minutes=60
    )
    session.refresh_from_db()
    return session


@pytest.fixture
def room(people):
    """A preparation session that began an hour ago and is not logged yet, facilitated by the
    coach, with WAI-SR and SRS due after it: what a kiosk hands over."""
    session = book_session(
        people.enrolment, actor=people.admin, hours_from_now=-1, facilitators=[people.coach]
    )
    step = ProtocolStep.objects.filter(instruments_due=["wai-sr", "srs"]).first()
    Session.objects.filter(pk=session.pk).update(protocol_step=step)
    session.refresh_from_db()
    return session
