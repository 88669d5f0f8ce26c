import datetime
import re
import zoneinfo

import pytest
from django.urls import reverse
from django.utils import timezone

from sessions import services
from sessions.models import CalendarFeed, Room, Session, SessionKind
from tests.factories import EnrolmentFactory, ProgramFactory, protocol_named
from tests.helpers import PERSONAS, assert_role_answer, matrix_cases

pytestmark = pytest.mark.django_db

MATRIX = {
    "session_detail": [302, 200, 404, 200, 200],
    "session_log": [302, 200, 404, 200, 200],
    "session_reschedule": [302, 403, 404, 403, 200],
    "session_cancel": [302, 403, 404, 403, 200],
    "session_dosing": [302, 200, 404, 200, 200],
    "session_ready": [302, 403, 404, 200, 200],
    "patient_timeline": [302, 200, 404, 200, 200],
    "my_calendar": [302, 200, 200, 200, 200],
    "program_sessions": [302, 403, 403, 200, 200],
    "program_list": [302, 403, 403, 200, 200],
    "session_book": [302, 403, 404, 403, 200],
}


@pytest.fixture
def dosing(people):
    start = timezone.now().replace(microsecond=0) - datetime.timedelta(hours=3)
    return services.session_book(
        actor=people.admin,
        program=people.enrolment.program,
        enrolment=people.enrolment,
        kind=SessionKind.DOSING,
        start=start,
        end=start + datetime.timedelta(hours=2),
        facilitators=[people.coach],
    )


def _url(page, people, dosing):
    if page in ("my_calendar", "program_list"):
        return reverse(page)
    if page == "program_sessions":
        return reverse(page, args=[people.enrolment.program.pk])
    if page == "patient_timeline":
        return reverse(page, args=[people.patient.public_id])
    if page == "session_book":
        return reverse(page, args=[people.patient.public_id, people.enrolment.pk])
    return reverse(page, args=[dosing.public_id])


@pytest.mark.parametrize(("page", "persona", "expected"), matrix_cases(MATRIX))
def test_role_matrix(client, people, dosing, page, persona, expected):
    assert_role_answer(client, people, persona, _url(page, people, dosing), expected)


def test_a_coach_who_sees_the_patient_but_did_not_facilitate_cannot_log(client, people, dosing):
    dosing.facilitators.clear()
    client.force_login(people.coach)
    assert client.get(reverse("session_detail", args=[dosing.public_id])).status_code == 200
    response = client.post(
        reverse("session_log", args=[dosing.public_id]),
        {"status": "completed", "duration_minutes": 60},
    )
    assert response.status_code == 404
    dosing.refresh_from_db()
    assert dosing.status == "scheduled"


def test_coach_logs_from_the_calendar_and_lands_on_the_due_list(client, people, time_machine):
    program = ProgramFactory(protocol=protocol_named("Psilocybin for depression, two doses"))
    from clinic import services as clinic_services

    # Enrolled from tomorrow, so at any hour today every session is still ahead and the lead
    # coach facilitates them all; then half an hour after the first session ends, the coach logs.
    enrolment = clinic_services.patient_enrol(
        actor=people.admin,
        patient=people.patient,
        program=program,
        start_date=timezone.localdate() + datetime.timedelta(days=1),
    )
    clinic_services.coach_assign(
        actor=people.admin, enrolment=enrolment, coach=people.coach, role="lead"
    )
    first = Session.objects.filter(enrolment=enrolment).order_by("scheduled_start").first()
    assert people.coach in first.facilitators.all()
    time_machine.move_to(first.scheduled_end + datetime.timedelta(minutes=30))
    client.force_login(people.coach)
    caseload = client.get(reverse("home")).content.decode()
    assert "Sessions waiting for your log" in caseload
    assert reverse("session_log", args=[first.public_id]) in caseload
    calendar = client.get(reverse("my_calendar")).content.decode()
    assert "Waiting for your log" in calendar
    assert reverse("session_log", args=[first.public_id]) in calendar
    response = client.post(
        reverse("session_log", args=[first.public_id]),
        {"status": "completed", "duration_minutes": 110, "notes": "Good start."},
        follow=True,
    )
    page = response.content.decode()
    assert "Session logged" in page
    assert "Questionnaires due after this session" in page
    assert "Working Alliance Inventory" in page
    entry = reverse("response_new", args=[people.patient.public_id, "wai-sr"])
    assert f"{entry}?session={first.public_id}" in page


def test_bad_log_keeps_what_was_typed(client, people, dosing):
    client.force_login(people.coach)
    response = client.post(
        reverse("session_log", args=[dosing.public_id]),
        {"status": "no_show", "duration_minutes": "", "notes": ""},
    )
    html = response.content.decode()
    assert "Give the reason in the note." in html
    assert re.search(r'<input[^>]*value="no_show"[^>]*checked', html)
    assert not re.search(r'<input[^>]*value="completed"[^>]*checked', html)


def test_over_capacity_group_enrolment_is_refused_from_the_page(client, people):
    group = ProgramFactory(
        kind="group", capacity=1, protocol=protocol_named("Group psilocybin program")
    )
    EnrolmentFactory(program=group)
    client.force_login(people.admin)
    response = client.post(
        reverse("patient_enrol", args=[people.patient.public_id]),
        {"program": group.pk, "start_date": timezone.localdate().isoformat()},
    )
    assert "This group is full" in response.content.decode()
    assert not Session.objects.filter(attendances__patient=people.patient, program=group).exists()


@pytest.mark.shifted_clock
def test_caseload_shows_the_next_session(client, people):
    start = timezone.now() + datetime.timedelta(days=2)
    services.session_book(
        actor=people.admin,
        program=people.enrolment.program,
        enrolment=people.enrolment,
        kind=SessionKind.PREPARATION,
        label="Preparation 2",
        start=start,
        end=start + datetime.timedelta(hours=1),
    )
    client.force_login(people.coach)
    assert "Preparation 2" in client.get(reverse("home")).content.decode()


# --- iCalendar feed -----------------------------------------------------------------------


def _feed_url(client, people, *, show_details=False):
    client.force_login(people.coach)
    client.post(reverse("calendar_feed_create"), {"show_details": "on"} if show_details else {})
    page = client.get(reverse("my_calendar")).content.decode()
    return re.search(r'value="(http://testserver/calendar/[^"]+\.ics)"', page).group(1)


@pytest.mark.shifted_clock
def test_feed_is_valid_icalendar_with_only_that_coachs_sessions(client, people, dosing):
    other_enrolment = EnrolmentFactory(program=people.enrolment.program)
    start = timezone.now() + datetime.timedelta(days=3)
    services.session_book(
        actor=people.admin,
        program=other_enrolment.program,
        enrolment=other_enrolment,
        kind="preparation",
        start=start,
        end=start + datetime.timedelta(hours=1),
        facilitators=[people.other_coach],
    )
    url = _feed_url(client, people, show_details=True)
    client.logout()
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/calendar")
    body = response.content.decode()
    lines = body.split("\r\n")
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-2] == "END:VCALENDAR" and lines[-1] == ""
    assert "VERSION:2.0" in lines
    assert body.count("BEGIN:VEVENT") == 1
    assert f"UID:{dosing.public_id}@rapport" in lines
    utc = dosing.scheduled_start.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    assert f"DTSTART:{utc}" in lines
    assert all(len(line.encode()) <= 75 for line in lines)
    assert people.patient.last_name not in body
    assert people.patient.record_number in body


def test_only_a_hash_of_the_feed_token_is_stored(client, people):
    url = _feed_url(client, people)
    token = url.rsplit("/", 1)[1].removesuffix(".ics")
    stored = CalendarFeed.objects.get(coach=people.coach).token_hash
    assert token not in stored and stored == CalendarFeed.hash_token(token)


def test_revoked_or_wrong_feed_token_is_404(client, people):
    url = _feed_url(client, people)
    client.post(reverse("calendar_feed_revoke"))
    client.logout()
    assert client.get(url).status_code == 404
    assert client.get(reverse("calendar_feed", args=["guess"])).status_code == 404


def test_admin_books_an_extra_session_and_a_clash_is_refused_on_the_page(client, people):
    url = reverse("session_book", args=[people.patient.public_id, people.enrolment.pk])
    client.force_login(people.coach)
    assert client.get(url).status_code == 403
    client.force_login(people.admin)
    start = (timezone.localtime() + datetime.timedelta(days=2)).replace(second=0, microsecond=0)
    data = {
        "kind": "preparation",
        "label": "Extra preparation",
        "start": start.strftime("%Y-%m-%dT%H:%M"),
        "end": (start + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        "facilitators": [people.coach.pk],
    }
    booked = client.post(url, data)
    session = Session.objects.get(label="Extra preparation")
    assert booked.url == reverse("session_detail", args=[session.public_id])
    again = client.post(url, {**data, "label": "Clash"})
    html = again.content.decode()
    assert "Cora Coach already facilitates Extra preparation on" in html
    assert 'value="Clash"' in html
    assert not Session.objects.filter(label="Clash").exists()


def test_program_dashboard_shows_members_alliance_flags_and_capacity(client, people):
    import io

    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from clinic.models import Program, User

    call_command("seed_demo", patients=4, alumni=0, seed=5, stdout=io.StringIO())
    group = Program.objects.get(name="Group psilocybin program")
    client.force_login(User.objects.get(email="admin@rapport.test"))
    url = reverse("program_sessions", args=[group.pk])
    with CaptureQueriesContext(connection) as small:
        html = client.get(url).content.decode()
    assert "Members" in html and "Latest bond (1–5)" in html and "places taken" in html
    listing = client.get(reverse("program_list")).content.decode()
    assert "Group psilocybin program" in listing and " of 8" in listing
    call_command("seed_demo", patients=12, alumni=0, seed=5, stdout=io.StringIO())
    with CaptureQueriesContext(connection) as large:
        client.get(url)
    assert len(large.captured_queries) == len(small.captured_queries)


@pytest.mark.parametrize("page", ["calendar_feed_create", "calendar_feed_revoke"])
@pytest.mark.parametrize("persona", PERSONAS)
def test_calendar_link_buttons_need_a_login_and_act_on_your_own_link(client, people, page, persona):
    if persona != "anonymous":
        client.force_login(getattr(people, persona))
    response = client.post(reverse(page))
    assert response.status_code == 302
    if persona == "anonymous":
        assert response.url.startswith(reverse("login"))
        assert not CalendarFeed.objects.exists()
    else:
        assert response.url == reverse("my_calendar")
        active = CalendarFeed.objects.filter(revoked_at__isnull=True)
        expected = 1 if page == "calendar_feed_create" else 0
        assert active.filter(coach=getattr(people, persona)).count() == expected
    assert client.get(reverse(page)).status_code in (302, 405)  # never a change on GET


def test_a_feed_link_of_one_coach_cannot_be_revoked_by_another(client, people):
    url = _feed_url(client, people)
    client.force_login(people.other_coach)
    client.post(reverse("calendar_feed_revoke"))
    client.logout()
    assert client.get(url).status_code == 200


@pytest.mark.shifted_clock
def test_caseload_row_has_a_log_button_for_the_coach_who_facilitated(client, people, dosing):
    log_url = reverse("session_log", args=[dosing.public_id])
    client.force_login(people.coach)
    row = re.search(r"<tbody>.*</tbody>", client.get(reverse("home")).content.decode(), re.S)
    assert f'href="{log_url}"' in row.group(0) and "Log session" in row.group(0)
    client.force_login(people.admin)  # sees the patient, did not facilitate
    row = re.search(r"<tbody>.*</tbody>", client.get(reverse("home")).content.decode(), re.S)
    assert people.patient.full_name in row.group(0) and log_url not in row.group(0)
    services.discharge_record(  # a dosing is logged completed once the patient is discharged
        actor=people.clinician,
        session=dosing,
        escort="Partner",
        sedation_resolved=True,
        override_note="Recorded on paper; vitals not typed in",
    )
    services.session_log(
        actor=people.coach, session=dosing, status="completed", duration_minutes=120
    )
    client.force_login(people.coach)
    assert log_url not in client.get(reverse("home")).content.decode()


def test_a_dose_out_of_range_is_refused_on_the_page_and_keeps_what_was_typed(
    client, people, dosing
):
    client.force_login(people.coach)
    response = client.post(
        reverse("session_dosing", args=[dosing.public_id]),
        {"substance": "psilocybin", "dose_mg": "250", "route": "oral", "weight_kg": "71.5"},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "250 mg is outside the expected 1-60 mg for psilocybin" in html
    assert 'value="250"' in html and 'value="71.5"' in html
    dosing.refresh_from_db()
    assert dosing.dose_mg is None and dosing.weight_kg is None
    ok = client.post(
        reverse("session_dosing", args=[dosing.public_id]),
        {"substance": "psilocybin", "dose_mg": "25", "route": "oral", "weight_kg": "71.5"},
        follow=True,
    )
    assert "Psilocybin 25.00 mg (0.350 mg/kg), Oral" in ok.content.decode()


@pytest.mark.shifted_clock
def test_a_group_circle_is_logged_with_attendance_per_member(client, people):
    group = ProgramFactory(kind="group", capacity=3)
    members = [EnrolmentFactory(program=group, patient=people.patient)]
    members += [EnrolmentFactory(program=group) for _ in range(2)]
    start = timezone.now().replace(microsecond=0) - datetime.timedelta(hours=3)
    circle = services.session_book(
        actor=people.admin,
        program=group,
        kind="preparation",
        label="Preparation circle 1",
        start=start,
        end=start + datetime.timedelta(hours=2),
        facilitators=[people.coach],
    )
    absent = members[2].patient
    client.force_login(people.coach)
    form = client.get(reverse("session_log", args=[circle.public_id])).content.decode()
    # The coach's own patient by name; the others' coaches' patients are not named.
    assert people.patient.full_name in form
    assert not any(m.patient.full_name in form for m in members[1:])
    assert "Another participant (1)" in form and "Another participant (2)" in form
    response = client.post(
        reverse("session_log", args=[circle.public_id]),
        {
            "status": "completed",
            "duration_minutes": 115,
            "notes": "",
            **{f"attendance_{m.patient_id}": "attended" for m in members[:2]},
            f"attendance_{absent.pk}": "absent",
        },
    )
    assert response.status_code == 302
    marks = dict(circle.attendances.values_list("patient_id", "status"))
    assert marks[absent.pk] == "absent" and marks[people.patient.pk] == "attended"
    client.force_login(people.admin)
    grid = client.get(reverse("program_sessions", args=[group.pk])).content.decode()
    assert "Preparation circle 1" in grid and "Absent" in grid and "Attended" in grid


def test_feed_folds_long_lines_and_names_no_patient_in_group_events(client, people, dosing):
    group = ProgramFactory(kind="group", capacity=3, name="Évening circle group " + "x" * 60)
    EnrolmentFactory(program=group)
    start = timezone.now().replace(microsecond=0) + datetime.timedelta(days=4)
    services.session_book(
        actor=people.admin,
        program=group,
        kind="integration",
        label="Intégration circle",
        start=start,
        end=start + datetime.timedelta(hours=2),
        facilitators=[people.coach],
    )
    body = client.get(_feed_url(client, people, show_details=True)).content
    lines = body.split(b"\r\n")
    assert all(len(line) <= 75 for line in lines)
    assert any(line.startswith(b" ") for line in lines)  # a folded continuation
    unfolded = body.replace(b"\r\n ", b"").decode()
    assert "SUMMARY:Intégration circle (group: Évening circle group " in unfolded
    assert body.count(b"BEGIN:VEVENT") == body.count(b"END:VEVENT") == 2
    for patient in (people.patient, *[e.patient for e in group.enrolments.all()]):
        assert patient.last_name not in unfolded and patient.first_name not in unfolded
    assert "\n" not in body.decode().replace("\r\n", "")  # CRLF only


def test_fold_never_splits_a_character_and_keeps_75_octets():
    from sessions.calendar import _fold

    line = "SUMMARY:" + "é" * 80
    folded = _fold(line)
    parts = folded.split("\r\n")
    assert all(len(part.encode()) <= 75 for part in parts)
    assert all(part.startswith(" ") for part in parts[1:])
    assert "".join([parts[0], *[p[1:] for p in parts[1:]]]) == line


@pytest.mark.shifted_clock
def test_week_calendar_shows_local_times_across_the_clock_change(client, people, settings):
    settings.TIME_ZONE = "Europe/London"
    london = zoneinfo.ZoneInfo("Europe/London")
    for day in (24, 26):  # Saturday before and Monday after the clocks go back on 25 October
        start = datetime.datetime(2026, 10, day, 10, 0, tzinfo=london)
        services.session_book(
            actor=people.admin,
            program=people.enrolment.program,
            enrolment=people.enrolment,
            kind="integration",
            label=f"Integration on the {day}th",
            start=start,
            end=start + datetime.timedelta(hours=1),
            facilitators=[people.coach],
        )
    client.force_login(people.coach)
    html = client.get(reverse("my_calendar"), {"week": "2026-W43"}).content.decode()
    assert "10:00 Integration on the 24th" in html
    assert "10:00 Integration on the 26th" not in html
    html = client.get(reverse("my_calendar"), {"week": "2026-W44"}).content.decode()
    assert "Mon 26 Oct" in html and "10:00 Integration on the 26th" in html


def test_the_django_admin_shows_a_session_read_only_and_links_to_its_page(
    client, superuser, dosing
):
    url = reverse("admin:clinic_sessions_session_change", args=[dosing.pk])
    client.force_login(superuser)
    page = client.get(url)
    assert page.status_code == 200
    assert reverse("session_detail", args=[dosing.public_id]) in page.content.decode()
    client.post(url, {"notes": "Music list agreed.", "status": "cancelled"})
    dosing.refresh_from_db()
    assert dosing.notes == "" and dosing.status == "scheduled"


# --- group sessions: names of other coaches' patients ---------------------------------------


@pytest.fixture
def shared_circle(people):
    """A group circle three hours ago, facilitated by the persona coach, with the coach's
    patient and a patient on the other coach's caseload."""
    from tests.factories import CoachAssignmentFactory

    group = ProgramFactory(kind="group", capacity=4)
    EnrolmentFactory(program=group, patient=people.patient, enrolled_by=people.admin)
    # Names that no page could hold by chance: a random "Le" matched "Learn more" once.
    theirs = EnrolmentFactory(
        program=group,
        enrolled_by=people.admin,
        patient__first_name="Zephyrine",
        patient__last_name="Quillfeather",
    )
    CoachAssignmentFactory(enrolment=theirs, coach=people.other_coach, assigned_by=people.admin)
    start = timezone.now().replace(microsecond=0) - datetime.timedelta(hours=3)
    circle = services.session_book(
        actor=people.admin,
        program=group,
        kind="integration",
        label="Integration circle",
        start=start,
        end=start + datetime.timedelta(hours=2),
        facilitators=[people.coach],
    )
    return circle, theirs.patient


def _pages_listing_attendees(circle):
    return [
        reverse("session_detail", args=[circle.public_id]),
        reverse("session_log", args=[circle.public_id]),
        reverse("my_calendar"),
        reverse("home"),
    ]


def test_a_coach_sees_only_their_own_patients_names_in_a_group(client, people, shared_circle):
    circle, stranger = shared_circle
    client.force_login(people.coach)
    for url in _pages_listing_attendees(circle):
        html = client.get(url).content.decode()
        assert people.patient.full_name in html, url
        assert stranger.last_name not in html and stranger.first_name not in html, url
        assert "Another participant" in html, url


def test_a_coach_who_sees_the_group_through_a_patient_sees_only_that_name(
    client, people, shared_circle
):
    circle, stranger = shared_circle
    client.force_login(people.other_coach)  # not a facilitator: sees it through their patient
    html = client.get(reverse("session_detail", args=[circle.public_id])).content.decode()
    assert stranger.full_name in html
    assert people.patient.last_name not in html and "Another participant" in html


@pytest.mark.parametrize("persona", ["clinician", "admin"])
def test_clinicians_and_admins_see_every_name_in_a_group(client, people, shared_circle, persona):
    circle, stranger = shared_circle
    client.force_login(getattr(people, persona))
    for url in _pages_listing_attendees(circle)[:2]:
        html = client.get(url).content.decode()
        assert people.patient.full_name in html and stranger.full_name in html, url
        assert "Another participant" not in html, url


# --- the feed by default: no record numbers, no session kinds --------------------------------


def test_the_feed_names_no_record_number_or_kind_unless_the_coach_opts_in(client, people, dosing):
    body = client.get(_feed_url(client, people)).content.decode().replace("\r\n ", "")
    assert not CalendarFeed.objects.get(revoked_at__isnull=True).show_details
    assert people.patient.record_number not in body
    assert "dosing" not in body.lower()
    assert "SUMMARY:Rapport session" in body.split("\r\n")
    detailed = client.get(_feed_url(client, people, show_details=True)).content.decode()
    assert people.patient.record_number in detailed and "Dosing" in detailed


def test_the_feed_escapes_carriage_returns_so_no_line_can_be_injected(client, people, dosing):
    Session.objects.filter(pk=dosing.pk).update(
        label="Dosing\rATTENDEE:mailto:x@evil.test\r\nX-A:1\nX-B:2"
    )
    body = client.get(_feed_url(client, people, show_details=True)).content.decode()
    assert "\r" not in body.replace("\r\n", "")  # CR only as part of CRLF
    assert "\n" not in body.replace("\r\n", "")
    lines = body.replace("\r\n ", "").split("\r\n")
    assert not any(line.startswith(("ATTENDEE", "X-A", "X-B")) for line in lines)
    assert "SUMMARY:Dosing\\nATTENDEE:mailto:x@evil.test\\nX-A:1\\nX-B:2 (record " in body.replace(
        "\r\n ", ""
    )


@pytest.mark.shifted_clock
def test_my_sessions_names_the_patient_and_room_and_offers_a_log_for_a_past_session(
    people, client_for
):
    room = Room.objects.create(name="Garden room")
    start = timezone.now().replace(microsecond=0) - datetime.timedelta(hours=3)
    past = services.session_book(
        actor=people.admin,
        program=people.enrolment.program,
        enrolment=people.enrolment,
        kind=SessionKind.PREPARATION,
        start=start,
        end=start + datetime.timedelta(hours=1),
        room=room,
        facilitators=[people.coach],
    )
    week = timezone.localtime(start).strftime("%G-W%V")
    html = client_for(people.coach).get(reverse("my_calendar"), {"week": week}).content.decode()
    grid = html[html.index('id="week-h"') : html.index('id="up-h"')]
    assert people.patient.full_name in grid
    assert "Garden room" in grid
    assert reverse("session_log", args=[past.public_id]) in grid
