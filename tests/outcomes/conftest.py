import datetime

import pytest
from django.utils import timezone

from sessions import services as session_services
from sessions.models import ProtocolStep, Session


@pytest.fixture
def completed_session(people):
    """A preparation session that ended two hours ago, logged, with WAI-SR and SRS due;
    the patient agreed to questionnaires by e-mail."""
    people.patient.email_consent = True
    people.patient.save()
    start = timezone.now().replace(microsecond=0) - datetime.timedelta(hours=3)
    session = session_services.session_book(
        actor=people.admin,
        program=people.enrolment.program,
        enrolment=people.enrolment,
        kind="preparation",
        start=start,
        end=start + datetime.timedelta(hours=1),
        facilitators=[people.coach],
    )
    step = ProtocolStep.objects.filter(instruments_due=["wai-sr", "srs"]).first()
    Session.objects.filter(pk=session.pk).update(protocol_step=step)
    session.refresh_from_db()
    session_services.session_log(
        actor=people.coach, session=session, status="completed", duration_minutes=60
    )
    session.refresh_from_db()
    return session
