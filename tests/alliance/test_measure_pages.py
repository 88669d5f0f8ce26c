"""What staff see of the measurement schedule: due and overdue in words on the caseload and
the patient page, the patient's delivery log, and follow-up completion on the program page."""

import datetime
import zoneinfo

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from clinic import services as clinic_services
from clinic.models import CoachAssignment
from outcomes import links, services
from tests.factories import ProgramFactory, protocol_named

pytestmark = pytest.mark.django_db

LONDON = zoneinfo.ZoneInfo("Europe/London")
START = datetime.datetime(2027, 1, 4, 8, 0, tzinfo=LONDON)
FOUR_WEEKS = datetime.date(2027, 3, 5)  # 28 days after Dosing 2 on 5 February


def _on(day, hour=10):
    return datetime.datetime.combine(day, datetime.time(hour), tzinfo=LONDON)


@pytest.fixture
def two_doses(people):
    """The persona patient in the two-dose psilocybin program from START, with e-mail consent
    and the persona coach as lead; the clock frozen at START."""
    with time_machine.travel(START, tick=False) as traveller:
        people.patient.email_consent = True
        people.patient.save()
        program = ProgramFactory(protocol=protocol_named("Psilocybin for depression, two doses"))
        enrolment = clinic_services.patient_enrol(
            actor=people.admin, patient=people.patient, program=program, start_date=START.date()
        )
        CoachAssignment.objects.create(
            enrolment=enrolment,
            coach=people.coach,
            role=CoachAssignment.Role.LEAD,
            start_date=START.date(),
            assigned_by=people.admin,
        )
        yield traveller, program


def _answer(people, code, at):
    version = services.latest_version(code)
    answers = {str(item["number"]): 0 for item in version.definition["items"]}
    services.response_record(
        actor=people.clinician,
        patient=people.patient,
        version=version,
        answers=answers,
        administered_at=at,
    )


def test_the_caseload_says_due_then_overdue_since_a_date(client, people, two_doses):
    traveller, _ = two_doses
    traveller.move_to(_on(FOUR_WEEKS))
    client.force_login(people.coach)  # after the clock moves: sign-ins expire
    page = client.get(reverse("home")).content.decode()
    assert "Questionnaires: 4 due" in page  # PHQ-9, QIDS-SR-16, GAD-7 and the GRID-HAMD-17
    traveller.move_to(_on(FOUR_WEEKS + datetime.timedelta(days=3)))
    client.force_login(people.coach)
    page = client.get(reverse("home")).content.decode()
    assert "Questionnaires: 4 overdue since 7 March 2027" in page
    assert "due" not in page.split("overdue since")[0].rsplit("Questionnaires:", 1)[1]


def test_the_patient_page_lists_what_is_owed_and_the_delivery_log(client, people, two_doses):
    traveller, _ = two_doses
    traveller.move_to(_on(FOUR_WEEKS, hour=9))
    assert links.send_calendar_measures() == 1
    traveller.move_to(_on(FOUR_WEEKS + datetime.timedelta(days=1), hour=9))
    assert links.send_calendar_measures() == 1  # the first reminder
    _answer(people, "phq-9", _on(FOUR_WEEKS + datetime.timedelta(days=1), hour=9))
    client.force_login(people.clinician)
    page = client.get(reverse("patient_detail", args=[people.patient.public_id])).content.decode()
    owed = page.split('id="measures-owed"')[1].split("</table>")[0]
    four_weeks = [row for row in owed.split("<tr>") if "4 weeks" in row]
    assert [row.split("</td>")[0].removeprefix("<td>") for row in four_weeks] == [
        "QIDS-SR-16",
        "GAD-7",
        "GRID-HAMD-17",
    ]  # PHQ-9 was answered
    assert all("due (answer by 12 March 2027)" in row for row in four_weeks)
    assert "3 months" in owed and "due on 7 May 2027" in owed  # the next one coming
    log = page.split('id="delivery-log"')[1].split("</table>")[0]
    assert "4 weeks" in log and "sent 5 Mar 2027, 09:00" in log
    assert "reminded 1 of 3" in log and "open until 9 Mar 2027, 09:00" in log
    client.force_login(people.other_coach)
    assert client.get(reverse("patient_detail", args=[people.patient.public_id])).status_code == 404


def test_the_program_page_shows_completion_per_time_point_and_instrument(client, people, two_doses):
    traveller, program = two_doses
    client.force_login(people.clinician)
    url = reverse("program_sessions", args=[program.pk])
    assert "No follow-up time point has come yet" in client.get(url).content.decode()
    traveller.move_to(_on(FOUR_WEEKS + datetime.timedelta(days=2)))
    client.force_login(people.clinician)
    # The clinician rates the GRID-HAMD-17 in the room; the patient answers nothing.
    _answer(people, "grid-hamd-17", _on(FOUR_WEEKS + datetime.timedelta(days=1)))
    page = client.get(url).content.decode()
    table = page.split('id="completion-h"')[1].split("</table>")[0]
    rows = [row for row in table.split("<tr>") if "4 weeks" in row]
    assert any("GRID-HAMD-17" in row and "1 of 1 answered" in row for row in rows)
    assert any("PHQ-9" in row and "0 of 1 answered" in row for row in rows)
    assert "3 months" not in table
    # Counted just now, on the page's own clock (no beat count yet): the page says when.
    counted = timezone.localtime().strftime("%H:%M")
    assert f"Counted at {counted}." in page
    client.force_login(people.coach)
    assert client.get(url).status_code == 403
