"""Reads about sessions, scoped through clinic.access like every patient read."""

import datetime
import re
import uuid
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from clinic.access import patients_visible_to, sees_all_patients
from clinic.models import Enrolment, Patient, Program

from . import monitoring
from .models import (
    AdverseEvent,
    Attendance,
    CalendarFeed,
    Discharge,
    Protocol,
    Room,
    Session,
    SessionKind,
    VitalLimits,
    VitalSigns,
)


def _with_people(qs: QuerySet[Session]) -> QuerySet[Session]:
    return qs.select_related(
        "program", "room", "enrolment__patient", "protocol_step"
    ).prefetch_related(
        "facilitators",
        Prefetch("attendances", queryset=Attendance.objects.select_related("patient")),
    )


ANOTHER_PARTICIPANT = "Another participant"


def name_attendees(sessions, *, user) -> list[Session]:
    """Give each session's prefetched attendances a `shown_name`, in one query: the patient's
    name when `user` may see that patient (clinic.access), else "Another participant (n)".

    A coach sees a group session when one of their patients attends, and facilitates circles
    whose members other coaches look after: those members' names are not theirs to see.
    `session.shown_patient` is the individual session's patient when visible, else None.
    """
    sessions = list(sessions)
    if sees_all_patients(user):
        visible = None
    else:
        ids = {a.patient_id for s in sessions for a in s.attendances.all()}
        ids |= {s.enrolment.patient_id for s in sessions if s.enrolment_id}
        visible = (
            set(patients_visible_to(user).filter(pk__in=ids).values_list("pk", flat=True))
            if ids
            else set()
        )
    for session in sessions:
        others = 0
        for attendance in session.attendances.all():
            if visible is None or attendance.patient_id in visible:
                attendance.shown_name = attendance.patient.full_name
            else:
                others += 1
                attendance.shown_name = f"{ANOTHER_PARTICIPANT} ({others})"
        session.shown_patient = (
            session.enrolment.patient
            if session.enrolment_id and (visible is None or session.enrolment.patient_id in visible)
            else None
        )
    return sessions


def sessions_visible_to(user) -> QuerySet[Session]:
    """Clinicians and admins: all. Coaches: sessions they facilitate, or of their patients."""
    if sees_all_patients(user):
        return Session.objects.all()
    visible = patients_visible_to(user)
    of_my_patients = Attendance.objects.filter(
        session=OuterRef("pk"), patient__in=visible.values("pk")
    )
    return Session.objects.filter(Q(facilitators=user) | Q(Exists(of_my_patients))).distinct()


def get_session_for(user, public_id) -> Session:
    """A session the user may see, by its public id (also one typed into a query string:
    anything that is not a UUID is a 404 like a session that does not exist), with attendees
    named as `user` may see them (see `name_attendees`)."""
    try:
        public_id = uuid.UUID(str(public_id))
        session = _with_people(sessions_visible_to(user)).get(public_id=public_id)
    except (Session.DoesNotExist, ValueError) as exc:
        raise Http404("No such session.") from exc
    name_attendees([session], user=user)
    return session


def can_log(user, session: Session) -> bool:
    """Coaches log sessions they facilitate; clinicians and admins any session they see."""
    return sees_all_patients(user) or any(f.pk == user.pk for f in session.facilitators.all())


def patient_timeline(*, patient: Patient) -> list[Session]:
    return list(
        _with_people(
            Session.objects.filter(attendances__patient=patient).order_by("scheduled_start", "id")
        )
    )


# Weeks a calendar can show: the years sessions can be booked in, with room either side.
CALENDAR_YEARS = (2000, 2100)


@dataclass(frozen=True)
class Week:
    monday: datetime.date

    @property
    def next_monday(self) -> datetime.date:
        return self.monday + datetime.timedelta(days=7)

    @property
    def label(self) -> str:
        return self.monday.strftime("%G-W%V")

    @property
    def previous_label(self) -> str:
        return (self.monday - datetime.timedelta(days=7)).strftime("%G-W%V")

    @property
    def next_label(self) -> str:
        return self.next_monday.strftime("%G-W%V")


def calendar_week(week: str | None) -> Week:
    """The ISO week like '2026-W48' (none given: this week). Anything else, or a week outside
    CALENDAR_YEARS, is a 404: there is no such page."""
    if not week:
        today = timezone.localdate()
        return Week(today - datetime.timedelta(days=today.weekday()))
    match = re.fullmatch(r"(\d{4})-W(\d{1,2})", week)
    if match is None:
        raise Http404("No such week.")
    year, number = (int(part) for part in match.groups())
    low, high = CALENDAR_YEARS
    if not low <= year <= high:
        raise Http404("No such week.")
    try:
        return Week(datetime.date.fromisocalendar(year, number, 1))
    except ValueError as exc:  # week 0, or week 53 of a 52-week year
        raise Http404("No such week.") from exc


def coach_week(*, user, monday: datetime.date) -> dict[datetime.date, list[Session]]:
    start = datetime.datetime.combine(
        monday, datetime.time.min, tzinfo=timezone.get_current_timezone()
    )
    end = start + datetime.timedelta(days=7)
    sessions = _with_people(
        Session.objects.filter(
            facilitators=user, scheduled_start__gte=start, scheduled_start__lt=end
        ).order_by("scheduled_start")
    )
    days = {monday + datetime.timedelta(days=n): [] for n in range(7)}
    for session in name_attendees(sessions, user=user):
        days[timezone.localtime(session.scheduled_start).date()].append(session)
    return days


def upcoming_for_coach(*, user, limit: int = 20) -> list[Session]:
    return name_attendees(
        _with_people(
            Session.objects.filter(
                facilitators=user,
                status=Session.Status.SCHEDULED,
                scheduled_end__gte=timezone.now(),
            ).order_by("scheduled_start")
        )[:limit],
        user=user,
    )


def to_log_for_coach(*, user) -> list[Session]:
    """Sessions the coach facilitated that have started but are not logged yet."""
    # Which ones first, then their people: PostgreSQL took 3-10 ms to plan the seven-table
    # join on every caseload view, and most users (clinicians, admins) have none to log.
    order = ("-scheduled_start", "-pk")
    waiting = list(
        Session.objects.filter(
            facilitators=user,
            status=Session.Status.SCHEDULED,
            scheduled_start__lte=timezone.now(),
        )
        .order_by(*order)
        .values_list("pk", flat=True)[:20]
    )
    return name_attendees(
        _with_people(Session.objects.filter(pk__in=waiting)).order_by(*order), user=user
    )


def unlogged_without_facilitator(*, user, limit: int = 20) -> list[Session]:
    """Sessions that have started, are still marked scheduled and have no facilitator: nobody
    has them on their list to log, so clinicians and admins see them on their worklist.
    Coaches: none (they are not theirs to chase)."""
    if not sees_all_patients(user):
        return []
    return name_attendees(
        _with_people(
            Session.objects.filter(
                status=Session.Status.SCHEDULED,
                scheduled_start__lte=timezone.now(),
                facilitators__isnull=True,
            ).order_by("-scheduled_start")
        )[:limit],
        user=user,
    )


# Beside each caseload row: the patient's next session (scheduled, not yet over, their place
# not cancelled) and the latest session the user facilitated that has started and is not
# logged yet. One LATERAL lookup a patient through their attendances, both at once: the
# two prefetches this replaces each took longer for Django to write (a window function
# over every session ahead of a page's patients) than for PostgreSQL to answer.
# What the caseload shows of those sessions, in the model's field order (`Model.from_db`
# takes a subset of the fields in that order).
_BESIDE_FIELDS = [
    f.attname
    for f in Session._meta.concrete_fields
    if f.attname in {"id", "public_id", "scheduled_start", "label", "kind"}
]
SESSIONS_BESIDE_SQL = """
    SELECT patient.id, {ahead}, {waiting}
    FROM unnest(%(patients)s::bigint[]) AS patient (id)
    LEFT JOIN LATERAL (
        SELECT {session}
        FROM clinic_sessions_attendance a
        JOIN clinic_sessions_session s ON s.id = a.session_id
        WHERE a.patient_id = patient.id AND a.status <> %(cancelled)s
          AND s.status = %(scheduled)s AND s.scheduled_end >= %(now)s
        ORDER BY s.scheduled_start, s.id
        LIMIT 1
    ) AS ahead ON true
    LEFT JOIN LATERAL (
        SELECT {session}
        FROM clinic_sessions_attendance a
        JOIN clinic_sessions_session s ON s.id = a.session_id
        JOIN clinic_sessions_session_facilitators f ON f.session_id = s.id
        WHERE a.patient_id = patient.id AND f.user_id = %(user)s
          AND s.status = %(scheduled)s AND s.scheduled_start <= %(now)s
        ORDER BY s.scheduled_start DESC, s.id DESC
        LIMIT 1
    ) AS waiting ON true
""".format(
    ahead=", ".join(f"ahead.{name}" for name in _BESIDE_FIELDS),
    waiting=", ".join(f"waiting.{name}" for name in _BESIDE_FIELDS),
    session=", ".join(f"s.{name}" for name in _BESIDE_FIELDS),
)


def attach_sessions_beside(patients, *, user) -> None:
    """Set `next_session` and `session_to_log` (a Session with only the fields the caseload
    shows, or None) on each patient, in one query."""
    found = {}
    if patients:
        with connection.cursor() as cursor:
            cursor.execute(
                SESSIONS_BESIDE_SQL,
                {
                    "patients": [p.pk for p in patients],
                    "user": user.pk,
                    "cancelled": Attendance.Status.CANCELLED.value,
                    "scheduled": Session.Status.SCHEDULED.value,
                    "now": timezone.now(),
                },
            )
            found = {row[0]: row for row in cursor.fetchall()}
    fields = len(_BESIDE_FIELDS)
    for patient in patients:
        row = found.get(patient.pk) or (None,) * (1 + 2 * fields)
        patient.next_session = _shown_session(row[1 : 1 + fields])
        patient.session_to_log = _shown_session(row[1 + fields :])


def _shown_session(values) -> Session | None:
    if values[_BESIDE_FIELDS.index("id")] is None:
        return None
    return Session.from_db(connection.alias, _BESIDE_FIELDS, values)


# A patient's next dosing: the nearest dosing ahead that is still on (the lower id on a tie).
# One LATERAL lookup a patient through their attendances: joining every patient's dosings
# ahead and keeping the first reads all of the clinic's (6,874 at 10,000 patients, ~8 ms and
# growing), and three correlated subqueries a row repeat the lookup for each column.
NEXT_DOSINGS_SQL = """
    SELECT patient.id, dosing.id, dosing.public_id, dosing.scheduled_start
    FROM unnest(%(patients)s::bigint[]) AS patient (id)
    CROSS JOIN LATERAL (
        SELECT s.id, s.public_id, s.scheduled_start
        FROM clinic_sessions_attendance a
        JOIN clinic_sessions_session s ON s.id = a.session_id
        WHERE a.patient_id = patient.id
          AND s.kind = %(kind)s AND s.status = %(status)s AND s.scheduled_start >= %(now)s
        ORDER BY s.scheduled_start, s.id
        LIMIT 1
    ) AS dosing
"""


def attach_next_dosing(patients) -> None:
    """Set `next_dosing_id`, `next_dosing_public_id` and `next_dosing_at` (None without a
    dosing ahead) on patients already read, in one query."""
    ahead = {}
    if patients:
        with connection.cursor() as cursor:
            cursor.execute(
                NEXT_DOSINGS_SQL,
                {
                    "patients": [p.pk for p in patients],
                    "kind": SessionKind.DOSING.value,
                    "status": Session.Status.SCHEDULED.value,
                    "now": timezone.now(),
                },
            )
            ahead = {patient_id: tuple(rest) for patient_id, *rest in cursor.fetchall()}
    for patient in patients:
        (
            patient.next_dosing_id,
            patient.next_dosing_public_id,
            patient.next_dosing_at,
        ) = ahead.get(patient.pk, (None, None, None))


def program_roster(*, program: Program) -> QuerySet[Enrolment]:
    """The program's active members in name order (the order the program page pages in)."""
    return (
        program.enrolments.filter(status=Enrolment.Status.ACTIVE)
        .select_related("patient")
        .order_by("patient__last_name", "patient__first_name", "patient_id")
    )


def group_program_overview(*, program: Program, roster=None) -> dict:
    """Group sessions and who attended them. `roster` (default: every active member) names
    the rows, so a page of a large program's members costs what a small program does."""
    sessions = list(
        _with_people(program.sessions.filter(is_group=True).order_by("scheduled_start"))
    )
    roster = list(program_roster(program=program) if roster is None else roster)
    marks = {(a.session_id, a.patient_id): a for s in sessions for a in s.attendances.all()}
    grid = [
        {
            "enrolment": enrolment,
            "cells": [marks.get((s.pk, enrolment.patient_id)) for s in sessions],
        }
        for enrolment in roster
    ]
    return {"sessions": sessions, "grid": grid, "roster": roster}


def feed_for_token(token: str) -> CalendarFeed:
    feed = (
        CalendarFeed.objects.select_related("coach")
        .filter(token_hash=CalendarFeed.hash_token(token), revoked_at__isnull=True)
        .first()
    )
    if feed is None or not feed.coach.is_active:
        raise Http404("No such calendar.")
    return feed


def feed_sessions(*, coach) -> QuerySet[Session]:
    since = timezone.now() - datetime.timedelta(days=30)
    return (
        Session.objects.filter(facilitators=coach, scheduled_start__gte=since)
        .exclude(status=Session.Status.CANCELLED)
        .select_related("enrolment__patient", "program", "room")
        .order_by("scheduled_start")
    )


def program_upcoming(*, program: Program, limit: int = 15) -> list[Session]:
    """The program's next scheduled sessions not over yet, in start order. Asked as one
    ("ends from now on, by start"), the database walks every session of the clinic in start
    order, nearly all of them past (150 ms at 10,000 patients); asked as those under way and
    those starting from now on, each is a short range of an index."""
    now = timezone.now()
    # Sessions starting together (a clinic books many at 09:00) in the order they were
    # booked, as the one query's index walk happened to list them, but now on purpose.
    scheduled = program.sessions.filter(status=Session.Status.SCHEDULED).order_by(
        "scheduled_start", "pk"
    )
    # Unordered: in start order, the database walks the past again to find the few.
    under_way = scheduled.filter(scheduled_start__lt=now, scheduled_end__gte=now).order_by()
    ahead = scheduled.filter(scheduled_start__gte=now)[:limit]
    # The ids first: as a subquery, the planner guesses thousands of rows and scans them all.
    # And the first few of them chosen here: told to order a list of ids and stop at `limit`,
    # the planner walks every session of the clinic in start order looking for them (60 ms
    # at 10,000 patients, where a few hundred sessions are under way at 09:00).
    shown = under_way.values_list("scheduled_start", "pk").union(
        ahead.values_list("scheduled_start", "pk")
    )
    first = [pk for _, pk in sorted(shown)[:limit]]
    return list(
        _with_people(Session.objects.filter(pk__in=first).order_by("scheduled_start", "pk"))
    )


def programs() -> QuerySet[Program]:
    active = Count("enrolments", filter=Q(enrolments__status=Enrolment.Status.ACTIVE))
    return Program.objects.select_related("protocol").annotate(members=active).order_by("name")


# --- the dosing day ---------------------------------------------------------------------------


def limits_for(program: Program) -> monitoring.Limits:
    """The program's vital-sign limits, or its modality's defaults."""
    row = VitalLimits.objects.filter(program=program).first()
    if row is None:
        return monitoring.DEFAULT_LIMITS.get(program.modality, monitoring.DEFAULT_LIMITS["other"])
    return monitoring.Limits(
        **{name: getattr(row, name) for name in VITAL_LIMIT_FIELDS}, source=row.source
    )


VITAL_LIMIT_FIELDS = (
    "pre_dose_systolic_above",
    "pre_dose_diastolic_above",
    "systolic_above",
    "diastolic_above",
    "heart_rate_above",
    "heart_rate_below",
    "spo2_below",
)


@dataclass
class TimelineEntry:
    """One line of a dosing day's timeline: a dose, a reading, a scale, an event."""

    at: datetime.datetime
    kind: str  # "dose", "vitals", "scale", "event", "discharge"
    title: str
    text: str
    alerts: list[str]
    patient_id: int | None = None
    entered_late: str = ""  # "entered 10:55 by …" when typed in well after it was measured


@dataclass
class DueRow:
    label: str
    due_at: datetime.datetime | None
    recorded: bool
    instruments: tuple[str, ...]
    discharge: bool


@dataclass
class DosingDay:
    session: Session
    schedule: monitoring.Schedule
    limits: monitoring.Limits
    vitals: list
    events: list
    discharges: list
    due: list[DueRow]
    entries: list[TimelineEntry]


LATE_AFTER = datetime.timedelta(minutes=15)


def _bp(v: VitalSigns) -> str:
    extra = []
    if v.respiratory_rate is not None:
        extra.append(f"RR {v.respiratory_rate}/min")
    if v.temperature_c is not None:
        extra.append(f"{v.temperature_c} °C")
    text = f"BP {v.systolic}/{v.diastolic} mmHg · HR {v.heart_rate}/min · SpO₂ {v.spo2}%"
    return " · ".join([text, *extra])


def is_pre_dose(vitals: VitalSigns, session: Session, schedule: monitoring.Schedule) -> bool:
    point = schedule.point(vitals.point) if vitals.point else None
    if point is not None:
        return point.after_dose_minutes is None and not point.discharge
    return session.actual_start is not None and vitals.measured_at < session.actual_start


def vitals_alerts(
    vitals: VitalSigns, session: Session, schedule: monitoring.Schedule, limits: monitoring.Limits
) -> list[str]:
    reading = monitoring.Reading(
        measured_at=vitals.measured_at,
        systolic=vitals.systolic,
        diastolic=vitals.diastolic,
        heart_rate=vitals.heart_rate,
        spo2=vitals.spo2,
        pre_dose=is_pre_dose(vitals, session, schedule),
    )
    return monitoring.alerts(reading, limits)


def dosing_schedule(session: Session) -> monitoring.Schedule:
    return monitoring.schedule_from(
        session.protocol_step.monitoring if session.protocol_step else None
    )


def dosing_day(*, session: Session) -> DosingDay:
    """Everything recorded in the room for one dosing, in time order, with what is due when
    (scales are added by the page above, which reads questionnaires)."""
    schedule = dosing_schedule(session)
    limits = limits_for(session.program)
    vitals = list(
        VitalSigns.objects.filter(session=session).select_related("taken_by", "entered_by")
    )
    events = list(
        AdverseEvent.objects.filter(session=session).select_related("recorded_by", "patient")
    )
    discharges = list(Discharge.objects.filter(session=session).select_related("decided_by"))
    entries = []
    if session.actual_start:
        dose = (
            f"{session.get_substance_display()} {session.dose_mg} mg, {session.get_route_display()}"
            if session.dose_mg
            else "Dose not recorded"
        )
        entries.append(TimelineEntry(session.actual_start, "dose", "Dose given", dose, []))
    for v in vitals:
        point = schedule.point(v.point)
        late = ""
        if v.entered_at - v.measured_at > LATE_AFTER:
            late = (
                f"entered {timezone.localtime(v.entered_at):%H:%M} by {v.entered_by.display_name}"
            )
        v.alerts = vitals_alerts(v, session, schedule, limits)
        entries.append(
            TimelineEntry(
                v.measured_at,
                "vitals",
                f"Vital signs{f' · {point.label}' if point else ''}",
                f"{_bp(v)} · taken by {v.taken_by.display_name}",
                v.alerts,
                v.patient_id,
                late,
            )
        )
    for e in events:
        entries.append(
            TimelineEntry(
                e.onset_at,
                "event",
                f"{'Serious a' if e.serious else 'A'}dverse event · {e.get_grade_display()}",
                e.description,
                [],
                e.patient_id,
            )
        )
    for d in discharges:
        entries.append(
            TimelineEntry(
                d.decided_at,
                "discharge",
                "Discharged" + (" (override)" if d.is_override else ""),
                f"by {d.decided_by.display_name}; escort: {d.escort or 'none'}"
                + (f"; note: {d.override_note}" if d.override_note else ""),
                list(d.overridden),
                d.patient_id,
            )
        )
    entries.sort(key=lambda e: e.at)
    recorded_points = {v.point for v in vitals}
    due = []
    for point in schedule.points:
        due_at = None
        if point.after_dose_minutes is not None and session.actual_start:
            due_at = session.actual_start + datetime.timedelta(minutes=point.after_dose_minutes)
        due.append(
            DueRow(
                label=point.label,
                due_at=due_at,
                recorded=point.code in recorded_points,
                instruments=point.instruments,
                discharge=point.discharge,
            )
        )
    return DosingDay(
        session=session,
        schedule=schedule,
        limits=limits,
        vitals=vitals,
        events=events,
        discharges=discharges,
        due=due,
        entries=entries,
    )


def latest_pre_dose_vitals(*, dosing_ids) -> dict[int, tuple[VitalSigns, list[str]]]:
    """{dosing id: (its latest pre-dose reading, alerts in words)}, for readiness; a fixed
    number of queries however many dosings."""
    # Readings first: most dosings asked about (the caseload's, weeks ahead) have none, and
    # then their sessions, programs and steps (with the steps' monitoring JSON) go unread.
    readings = list(
        VitalSigns.objects.filter(session_id__in=list(dosing_ids)).order_by("measured_at", "id")
    )
    sessions = {
        s.pk: s
        for s in Session.objects.filter(pk__in={v.session_id for v in readings}).select_related(
            "program", "protocol_step"
        )
    }
    result = {}
    limits_of = {}
    for v in readings:
        session = sessions[v.session_id]
        schedule = dosing_schedule(session)
        if not is_pre_dose(v, session, schedule):
            continue
        if session.program_id not in limits_of:
            limits_of[session.program_id] = limits_for(session.program)
        result[v.session_id] = (
            v,
            vitals_alerts(v, session, schedule, limits_of[session.program_id]),
        )
    return result


def adverse_events_for(*, patient: Patient) -> QuerySet[AdverseEvent]:
    return AdverseEvent.objects.filter(patient=patient).select_related("session", "recorded_by")


def adverse_event_for(*, user, public_id) -> AdverseEvent:
    try:
        return AdverseEvent.objects.select_related("patient", "session").get(
            public_id=uuid.UUID(str(public_id)), patient__in=patients_visible_to(user)
        )
    except (AdverseEvent.DoesNotExist, ValueError) as exc:
        raise Http404("No such adverse event.") from exc


def adverse_event_history(*, event: AdverseEvent) -> list:
    """Every saved version of the event, newest first, with who changed it and why."""
    return list(event.history.select_related("history_user").order_by("-history_date"))


def attendee_choices(session: Session) -> list:
    """(patient, name) for a group session's form; empty for an individual one."""
    if not session.is_group:
        return []
    return [
        (a.patient, getattr(a, "shown_name", "Another participant"))
        for a in session.attendances.all()
    ]


def chosen_patient(session: Session, data: dict):
    if not session.is_group:
        return None
    wanted = str(data.get("patient", ""))
    return next((a.patient for a in session.attendances.all() if str(a.patient_id) == wanted), None)


def room_staff(session: Session, *, user) -> QuerySet:
    """Who may have taken a reading: the session's facilitators and the person entering it."""
    ids = [f.pk for f in session.facilitators.all()] + [user.pk]
    return get_user_model().objects.filter(pk__in=ids, is_active=True).order_by("display_name")


# --- rooms and protocols (admin pages) ---------------------------------------------------------


def rooms() -> QuerySet[Room]:
    """Every room, with how many scheduled sessions from now on are booked in it."""
    upcoming = Count(
        "sessions",
        filter=Q(sessions__status=Session.Status.SCHEDULED)
        & Q(sessions__scheduled_end__gte=timezone.now()),
    )
    return Room.objects.annotate(upcoming=upcoming).order_by("-is_active", "name")


def protocols() -> QuerySet[Protocol]:
    """Every protocol with its number of steps and of programs that follow it."""
    return Protocol.objects.annotate(
        step_count=Count("steps", distinct=True), program_count=Count("programs", distinct=True)
    ).order_by("-is_active", "name")
