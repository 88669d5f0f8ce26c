"""Reads about questionnaires: responses, scores, and the measurement plan (what is due after a
session, what is overdue for a patient).

The plan itself lives on the protocol: each `ProtocolStep.instruments_due` lists the
instrument codes due after a session generated from that step. A code is answered for a
session once a Response for that patient is linked to that session.
"""

import dataclasses
import datetime
import math
from enum import StrEnum

from django.conf import settings
from django.contrib.postgres.aggregates import ArrayAgg
from django.db import connection, transaction
from django.db.models import F, FloatField, Func, QuerySet, TextField, Value
from django.db.models.functions import Cast
from django.http import Http404
from django.utils import timezone

from clinic.access import patients_visible_to
from clinic.models import Enrolment, Patient
from sessions import schedules
from sessions.models import Attendance, Session, SessionKind
from sessions.schedules import ScheduleAnchor

from . import scoring
from .models import (
    CompletionSummary,
    Instrument,
    InstrumentVersion,
    Respondent,
    Response,
    SelfReportLink,
)


def item_answer(number: int) -> Cast:
    """An item's answer as a SQL number, for filters and aggregates over `Response.answers`:

        Response.objects.annotate(item_9=item_answer(9)).filter(item_9__gte=1)

    (Django reads a numeric key like `answers__9` as an array index, so it cannot be used.)
    """
    text = Func(
        F("answers"),
        Value(str(number)),
        function="jsonb_extract_path_text",
        output_field=TextField(),
    )
    return Cast(text, FloatField())


def get_response_for(user, public_id) -> Response:
    try:
        return (
            Response.objects.select_related(
                "patient", "version__instrument", "session", "about_coach", "entered_by"
            )
            .prefetch_related("scores")
            .get(public_id=public_id, patient__in=patients_visible_to(user))
        )
    except (Response.DoesNotExist, ValueError) as exc:
        raise Http404("No such response.") from exc


# Alliance ratings may be about one named coach rather than the care team.
RATES_A_COACH = ("wai-sr", "srs")


def coaches_of(patient) -> QuerySet:
    """Staff who are or were assigned to the patient, or facilitated one of their sessions:
    whom an alliance rating may name."""
    from django.contrib.auth import get_user_model
    from django.db.models import Q

    return (
        get_user_model()
        .objects.filter(
            Q(assignments__enrolment__patient=patient)
            | Q(facilitated_sessions__attendances__patient=patient)
        )
        .distinct()
        .order_by("display_name")
    )


def newest_definitions(codes) -> dict[str, dict]:
    """The newest definition of each instrument named, by code.

    What belongs to the instrument rather than to one version's wording (its subscales, its
    response and remission rule) is read from here: PHQ-9 gained its rule in version 2, and a
    version-1 response is judged by the same rule.
    """
    newest: dict[str, InstrumentVersion] = {}
    for version in InstrumentVersion.objects.filter(instrument__code__in=codes).select_related(
        "instrument"
    ):
        code = version.instrument.code
        if code not in newest or scoring.version_key(version.version) > scoring.version_key(
            newest[code].version
        ):
            newest[code] = version
    return {code: version.definition for code, version in newest.items()}


def wording_for(version: InstrumentVersion) -> dict[int, str]:
    return dict(version.wording.values_list("item", "text"))


def score_rows(response: Response) -> list[dict]:
    """The response's scales in the definition's order, each as clinicians read it (the
    instrument's primary statistic: PHQ-9 sum, WAI-SR mean, MEQ-30 % of max) and whether
    items were missing from it."""
    stored = {score.scale: score for score in response.scores.all()}
    return [
        {
            "primary": primary,
            "items_missing": primary.scale in stored and not stored[primary.scale].complete,
        }
        for primary in response.primary_scores
    ]


def findings(response: Response) -> list[str]:
    """Plain sentences for results beyond the scale scores (MEQ-30 complete mystical
    experience, SRS cut-off, how the score is formed where that is not obvious)."""
    extras, special = response.extras, response.version.definition.get("special", {})
    found = []
    if "complete_mystical_experience" in extras:
        found.append(
            {
                True: "Complete mystical experience: yes (at least 60% of maximum on all four "
                "subscales).",
                False: "Complete mystical experience: no (below 60% of maximum on at least one "
                "subscale).",
                None: "Complete mystical experience: not determined (it needs every item).",
            }[extras["complete_mystical_experience"]]
        )
    if extras.get("below_cutoff") is not None:
        side = "below" if extras["below_cutoff"] else "not below"
        found.append(f"Total is {side} the clinic's cut-off of {special.get('cutoff')}.")
    if special.get("score_label"):
        found.append(special["score_label"])
    return found


def answer_rows(response: Response, wording: dict[int, str]) -> list[dict]:
    """Each item with its label (official wording when imported) and the answer given."""
    definition = response.version.definition
    rows = []
    for item in definition["items"]:
        labels = {**definition["scale"], **item.get("scale", {})}.get("labels", {})
        value = response.answers.get(str(item["number"]))
        shown = None if value is None else (int(value) if float(value).is_integer() else value)
        rows.append(
            {
                "number": item["number"],
                "label": wording.get(item["number"], item["label"]),
                "answer": shown,
                "anchor": labels.get(str(shown), "") if shown is not None else "",
                "scored": item.get("scored", True),
            }
        )
    return rows


def responses_for(*, patient) -> QuerySet[Response]:
    return (
        Response.objects.filter(patient=patient)
        .select_related("version__instrument", "session")
        .prefetch_related("scores")
        .order_by("-administered_at", "-id")
    )


# --- the measurement plan ----------------------------------------------------------------


# A session booked outside the protocol (an extra preparation, an extra integration) asks for
# what the protocols ask after those kinds: the alliance, so the flags see it (DESIGN §1).
ADHOC_DUE = {
    SessionKind.PREPARATION: ("wai-sr", "srs"),
    SessionKind.INTEGRATION: ("wai-sr", "srs"),
}


def codes_due(kind: str, step_codes: list[str] | None) -> list[str]:
    """What is due after a session: its protocol step's codes, in the step's order, or for a
    session with no step (`step_codes` None) what ADHOC_DUE asks after its kind."""
    if step_codes is not None:
        return list(step_codes)
    return list(ADHOC_DUE.get(kind, ()))


def planned_codes(session) -> list[str]:
    """Instrument codes due after this session (see `codes_due`)."""
    step = session.protocol_step
    return codes_due(session.kind, step.instruments_due if step is not None else None)


def _due_patients(session) -> list:
    """Who owes the session's questionnaires: those who came once it is logged; before that,
    everyone still expected."""
    attendances = session.attendances.all()
    if session.status == Session.Status.COMPLETED:
        return [a.patient for a in attendances if a.status in Attendance.PRESENT]
    if session.status == Session.Status.SCHEDULED:
        return [a.patient for a in attendances if a.status not in Attendance.NOT_COMING]
    return []


def unanswered_codes(session, *, patient=None) -> list[str]:
    """What is still due for a session: the plan's codes minus the responses already linked
    to it — for one patient, or (without one) those not yet answered by everyone who owes
    them. Codes of instruments that are not loaded are left out."""
    codes = planned_codes(session)
    if not codes:
        return []
    known = set(Instrument.objects.filter(code__in=codes).values_list("code", flat=True))
    patients = [patient] if patient is not None else _due_patients(session)
    answered = set(
        Response.objects.filter(session=session, patient__in=[p.pk for p in patients]).values_list(
            "patient_id", "version__instrument__code"
        )
    )
    return [
        code
        for code in codes
        if code in known and any((p.pk, code) not in answered for p in patients)
    ]


def due_for_session(session, *, user=None) -> list[dict]:
    """The after-session page's list: per patient who owes them (and whom `user` may see),
    every planned questionnaire with the response already entered for it, if any."""
    codes = planned_codes(session)
    patients = _due_patients(session)
    if not codes or not patients:
        return []
    if user is not None:
        visible = set(
            patients_visible_to(user)
            .filter(pk__in=[p.pk for p in patients])
            .values_list("pk", flat=True)
        )
        patients = [p for p in patients if p.pk in visible]
    instruments = {i.code: i for i in Instrument.objects.filter(code__in=codes)}
    answered = {
        (r.patient_id, r.version.instrument.code): r
        for r in Response.objects.filter(session=session)
        .select_related("version__instrument")
        .order_by("administered_at", "id")
    }
    rows = []
    for patient in patients:
        items = [
            {
                "code": code,
                "instrument": instruments[code],
                "response": answered.get((patient.pk, code)),
            }
            for code in codes
            if code in instruments
        ]
        rows.append(
            {
                "patient": patient,
                "items": items,
                "some_entered": any(i["response"] for i in items),
                "link_codes": [
                    i["code"]
                    for i in items
                    if i["response"] is None and i["instrument"].respondent == Respondent.PATIENT
                ],
            }
        )
    return rows


def due_in_room(*, session, patient) -> list[str]:
    """The questionnaires a patient answers on the kiosk at a session: the patient-rated ones
    still due for them there, in the plan's order. The kiosk asks this one function, so when
    the plan gains other schedules only this changes."""
    if patient not in _due_patients(session):
        return []
    patient_rated = set(
        Instrument.objects.filter(respondent=Respondent.PATIENT).values_list("code", flat=True)
    )
    return [code for code in unanswered_codes(session, patient=patient) if code in patient_rated]


def _overdue_window() -> tuple[datetime.datetime, datetime.datetime]:
    """Sessions that ended between these two moments have overdue questionnaires: at least
    QUESTIONNAIRE_OVERDUE_HOURS ago, and not so long ago that the measure is simply missed."""
    now = timezone.now()
    return (
        now - datetime.timedelta(days=settings.QUESTIONNAIRE_MISSED_AFTER_DAYS),
        now - datetime.timedelta(hours=settings.QUESTIONNAIRE_OVERDUE_HOURS),
    )


def _overdue(patient_ids, *, patient_rated_only: bool) -> list[tuple[int, int, str]]:
    """(patient id, session id, code) still unanswered after completed sessions in the
    overdue window. Three queries whatever the number of patients."""
    return [row[:3] for row in _overdue_rows(patient_ids, patient_rated_only=patient_rated_only)]


def _overdue_rows(patient_ids, *, patient_rated_only: bool, instruments=None) -> list[tuple]:
    """As `_overdue`, each row with the session's end as well; `instruments` (default: read
    here) are every loaded instrument."""
    since, until = _overdue_window()
    rows = Attendance.objects.filter(
        patient_id__in=patient_ids,
        status__in=Attendance.PRESENT,
        session__status=Session.Status.COMPLETED,
        session__scheduled_end__gte=since,
        session__scheduled_end__lte=until,
    ).values_list(
        "patient_id",
        "session_id",
        "session__kind",
        "session__protocol_step__instruments_due",
        "session__scheduled_end",
    )
    # Only these sessions' answers matter: naming them (not the window again) lets the
    # database find them by session instead of scanning every session of the clinic.
    answered = set(
        Response.objects.filter(
            patient_id__in=patient_ids,
            session_id__in=rows.values("session_id"),
        ).values_list("patient_id", "session_id", "version__instrument__code")
    )
    wanted = {
        i.code
        for i in (Instrument.objects.all() if instruments is None else instruments)
        if not patient_rated_only or i.respondent == Respondent.PATIENT
    }
    return [
        (patient_id, session_id, code, ended)
        for patient_id, session_id, kind, step_codes, ended in rows
        for code in codes_due(kind, step_codes)
        if code in wanted and (patient_id, session_id, code) not in answered
    ]


def overdue_counts(*, patient_ids: list[int]) -> dict[int, int]:
    """Per patient: patient-rated questionnaires due after completed sessions and still
    unanswered (see `_overdue_window`). For the caseload badge; three queries a page."""
    counts: dict[int, int] = {}
    for patient_id, _session_id, _code in _overdue(patient_ids, patient_rated_only=True):
        counts[patient_id] = counts.get(patient_id, 0) + 1
    return counts


def overdue_for(*, patient) -> list[dict]:
    """One patient's overdue questionnaires (clinician-rated ones too), oldest session first,
    each as {"session", "instrument"}."""
    rows = _overdue([patient.pk], patient_rated_only=False)
    sessions = Session.objects.in_bulk({session_id for _, session_id, _ in rows})
    instruments = {i.code: i for i in Instrument.objects.filter(code__in={c for *_, c in rows})}
    found = [{"session": sessions[s], "instrument": instruments[c]} for _, s, c in rows]
    return sorted(found, key=lambda row: row["session"].scheduled_start)


# --- the calendar: measures due by date (the protocol's measurement schedule) ----------------


class MeasureStatus(StrEnum):
    UPCOMING = "upcoming"
    DUE = "due"
    OVERDUE = "overdue"
    ANSWERED = "answered"
    MISSED = "missed"


# Sent on the due date from this local hour, not at midnight.
CALENDAR_SEND_HOUR = datetime.time(9, 0)


@dataclasses.dataclass
class CalendarItem:
    """One dated occasion of a patient's measurement schedule and what was answered for it
    (any response within its window counts, entered in clinic, by link or imported)."""

    patient: Patient
    enrolment: Enrolment
    point: schedules.TimePoint
    instruments: dict  # code -> Instrument, the loaded ones in the schedule's order
    answered: set
    today: datetime.date

    @property
    def unanswered(self) -> list[str]:
        return [code for code in self.instruments if code not in self.answered]

    @property
    def overdue_since(self) -> datetime.date:
        grace = datetime.timedelta(days=math.ceil(settings.QUESTIONNAIRE_OVERDUE_HOURS / 24))
        return min(self.point.due_on + grace, self.point.closes_on)

    @property
    def status(self) -> MeasureStatus:
        if not self.unanswered:
            return MeasureStatus.ANSWERED
        if self.today < self.point.due_on:
            return MeasureStatus.UPCOMING
        if self.today > self.point.closes_on:
            return MeasureStatus.MISSED
        if self.today >= self.overdue_since:
            return MeasureStatus.OVERDUE
        return MeasureStatus.DUE

    @property
    def to_mail(self) -> list[str]:
        return [
            code
            for code in self.unanswered
            if self.instruments[code].respondent == Respondent.PATIENT
        ]


def _anchor_dates(enrolments, *, within) -> dict[int, dict[str, datetime.date | None]]:
    """Per enrolment: its start and its first and last dosing booked or held (local dates).
    `within` is the enrolments' queryset, used as a subquery."""
    dosings: dict[int, list[datetime.date]] = {}
    for enrolment_id, start in (
        Session.objects.filter(kind=SessionKind.DOSING, enrolment__in=within)
        .exclude(status__in=[Session.Status.CANCELLED, Session.Status.NO_SHOW])
        .values_list("enrolment_id", "scheduled_start")
    ):
        dosings.setdefault(enrolment_id, []).append(timezone.localdate(start))
    return {
        e.pk: {
            ScheduleAnchor.ENROLMENT: e.start_date,
            ScheduleAnchor.FIRST_DOSING: min(dosings[e.pk]) if e.pk in dosings else None,
            ScheduleAnchor.LAST_DOSING: max(dosings[e.pk]) if e.pk in dosings else None,
        }
        for e in enrolments
    }


def calendar_items(*, enrolments, today=None, keep=None, instruments=None) -> list[CalendarItem]:
    """Every dated occasion of the enrolments' measurement schedules that `keep(point,
    today)` accepts (all of them by default), with what was answered in each window. Four
    queries whatever the number of enrolments (none skipped when there is nothing to find,
    so a page's count stays the same); three when given `instruments`, every loaded one."""
    today = today or timezone.localdate()
    scheduled = enrolments.filter(program__protocol__isnull=False)
    listed = [
        e
        for e in scheduled.select_related("patient", "program__protocol")
        if e.program.protocol.measurement_schedule
    ]
    anchors = _anchor_dates(listed, within=scheduled)
    found = []
    for enrolment in listed:
        for point in schedules.time_points(
            enrolment.program.protocol.measurement_schedule,
            anchors=anchors[enrolment.pk],
            prefix=f"e{enrolment.pk}/",
        ):
            if keep is None or keep(point, today):
                found.append((enrolment, point))
    instruments = {
        i.code: i for i in (Instrument.objects.all() if instruments is None else instruments)
    }
    answers: dict[int, list[tuple[str, datetime.date]]] = {}
    for patient_id, code, at in Response.objects.filter(
        patient_id__in=scheduled.values("patient_id"),
        administered_at__date__gte=min((point.opens_on for _, point in found), default=today),
        administered_at__date__lte=max((point.closes_on for _, point in found), default=today),
    ).values_list("patient_id", "version__instrument__code", "administered_at"):
        answers.setdefault(patient_id, []).append((code, timezone.localdate(at)))
    items = []
    for enrolment, point in found:
        answered = {
            code
            for code, on in answers.get(enrolment.patient_id, [])
            if point.opens_on <= on <= point.closes_on
        }
        items.append(
            CalendarItem(
                patient=enrolment.patient,
                enrolment=enrolment,
                point=point,
                instruments={c: instruments[c] for c in point.instruments if c in instruments},
                answered=answered,
                today=today,
            )
        )
    return items


def _open_now(point: schedules.TimePoint, today: datetime.date) -> bool:
    return point.due_on <= today <= point.closes_on


def calendar_due_to_send(*, now=None) -> list[CalendarItem]:
    """Calendar occasions to e-mail now: due today (from CALENDAR_SEND_HOUR) or since, inside
    their window, to patients in an active enrolment who have an address and agreed, with
    patient-rated questionnaires unanswered, and no e-mail sent for the occasion yet."""
    now = now or timezone.now()
    local = timezone.localtime(now)
    today = local.date()
    enrolments = (
        Enrolment.objects.filter(
            status=Enrolment.Status.ACTIVE,
            patient__email_consent=True,
            program__protocol__isnull=False,
        )
        .exclude(patient__email="")
        .exclude(patient__status=Patient.Status.WITHDRAWN)
    )
    items = calendar_items(enrolments=enrolments, today=today, keep=_open_now)
    sent_keys = set(
        SelfReportLink.objects.filter(
            patient_id__in={i.patient.pk for i in items},
            by_email=True,
            schedule_key__in={i.point.key for i in items},
        ).values_list("patient_id", "schedule_key")
    )
    return [
        item
        for item in items
        if (item.patient.pk, item.point.key) not in sent_keys
        and item.to_mail
        and (item.point.due_on < today or local.time() >= CALENDAR_SEND_HOUR)
    ]


def _session_overdue_rows(patient_ids, *, instruments) -> list[tuple[int, datetime.date, str]]:
    """(patient id, overdue since, code) for questionnaires still owed after sessions."""
    grace = datetime.timedelta(hours=settings.QUESTIONNAIRE_OVERDUE_HOURS)
    return [
        (p, timezone.localdate(ended + grace), code)
        for p, _s, code, ended in _overdue_rows(
            patient_ids, patient_rated_only=False, instruments=instruments
        )
    ]


def measures_in_words(*, patient_ids: list[int]) -> dict[int, list[str]]:
    """Per patient, what the caseload says about questionnaires: "3 due" and "2 overdue since
    4 March 2027", after sessions and by the calendar together. Constant queries a page."""
    due: dict[int, int] = {}
    overdue: dict[int, list[datetime.date]] = {}
    # Read once for both halves: the instruments are the same few rows either way.
    instruments = list(Instrument.objects.all())
    for patient_id, since, _code in _session_overdue_rows(patient_ids, instruments=instruments):
        overdue.setdefault(patient_id, []).append(since)
    for item in calendar_items(
        enrolments=Enrolment.objects.filter(
            patient_id__in=patient_ids, status=Enrolment.Status.ACTIVE
        ),
        keep=_open_now,
        instruments=instruments,
    ):
        if item.status == MeasureStatus.DUE:
            due[item.patient.pk] = due.get(item.patient.pk, 0) + len(item.unanswered)
        elif item.status == MeasureStatus.OVERDUE:
            overdue.setdefault(item.patient.pk, []).extend(
                [item.overdue_since] * len(item.unanswered)
            )
    words: dict[int, list[str]] = {}
    for patient_id in patient_ids:
        said = []
        if due.get(patient_id):
            said.append(f"{due[patient_id]} due")
        if overdue.get(patient_id):
            since = min(overdue[patient_id])
            said.append(f"{len(overdue[patient_id])} overdue since {date_words(since)}")
        if said:
            words[patient_id] = said
    return words


def date_words(day: datetime.date) -> str:
    return f"{day.day} {day:%B %Y}"


def measures_for(*, patient) -> list[dict]:
    """The patient page's list of questionnaires owed: after sessions (overdue) and by the
    calendar (due, overdue, and the next one coming), each with its status in words."""
    rows = []
    instruments = {i.code: i for i in Instrument.objects.all()}
    for row in overdue_for(patient=patient):
        since = timezone.localdate(
            row["session"].scheduled_end
            + datetime.timedelta(hours=settings.QUESTIONNAIRE_OVERDUE_HOURS)
        )
        rows.append(
            {
                "instrument": row["instrument"],
                "occasion": row["session"].label or row["session"].get_kind_display(),
                "status": MeasureStatus.OVERDUE,
                "words": f"overdue since {date_words(since)}",
                "sort": since,
            }
        )
    items = calendar_items(
        enrolments=Enrolment.objects.filter(patient=patient, status=Enrolment.Status.ACTIVE)
    )
    upcoming = [i for i in items if i.status == MeasureStatus.UPCOMING][:1]
    for item in [i for i in items if i.status in (MeasureStatus.DUE, MeasureStatus.OVERDUE)]:
        for code in item.unanswered:
            overdue = item.status == MeasureStatus.OVERDUE
            rows.append(
                {
                    "instrument": instruments[code],
                    "occasion": item.point.label,
                    "status": item.status,
                    "words": f"overdue since {date_words(item.overdue_since)}"
                    if overdue
                    else f"due (answer by {date_words(item.point.closes_on)})",
                    "sort": item.point.due_on,
                }
            )
    for item in upcoming:
        for code in item.unanswered:
            rows.append(
                {
                    "instrument": instruments[code],
                    "occasion": item.point.label,
                    "status": item.status,
                    "words": f"due on {date_words(item.point.due_on)}",
                    "sort": item.point.due_on,
                }
            )
    return sorted(rows, key=lambda r: r["sort"])


# Per program: its members' anchor dates, each (member, time point) of the offsets schedule
# that has come due with the instruments answered in its window, and so per time point and
# instrument how many were due and answered. The same rules as `calendar_items` (local dates
# in the clinic's zone; any response of the patient counts, however it came), counted in the
# database: the program page must not read a clinic's years of responses into Python to show
# sixteen numbers. One index range scan per member and time point (not per instrument too).
# Versions stand for their instrument, so the scan reads no other table.
_COMPLETION_SQL = """
WITH member AS (
    SELECT e.id, e.patient_id, e.start_date,
           min((s.scheduled_start AT TIME ZONE %(zone)s)::date) AS first_dosing,
           max((s.scheduled_start AT TIME ZONE %(zone)s)::date) AS last_dosing
    FROM {enrolment} e
    LEFT JOIN {session} s
           ON s.enrolment_id = e.id AND s.kind = %(dosing)s AND s.status <> ALL(%(not_held)s)
    WHERE e.program_id = %(program)s AND e.status <> %(withdrawn)s
    GROUP BY e.id
),
occasion AS (
    SELECT m.patient_id, p.entry, p.days, p.label, p.window_days,
           CASE p.anchor WHEN %(enrolment)s THEN m.start_date
                         WHEN %(first_dosing)s THEN m.first_dosing
                         WHEN %(last_dosing)s THEN m.last_dosing
           END + p.days AS due_on
    FROM member m
    CROSS JOIN unnest(%(point_entries)s::int[], %(anchors)s::text[], %(days)s::int[],
                      %(windows)s::int[], %(labels)s::text[])
         AS p(entry, anchor, days, window_days, label)
),
-- Materialised, or the planner inlines it below the join with the instruments and runs
-- the scan once per instrument again.
answered AS MATERIALIZED (
    SELECT o.entry, o.days, o.label, ARRAY(
               SELECT r.version_id FROM {response} r
               WHERE r.patient_id = o.patient_id
                 -- A day's margin either side keeps the index range exact whatever the
                 -- zone's offset; the local date decides.
                 AND r.administered_at
                     >= (o.due_on - o.window_days - 1)::timestamp AT TIME ZONE %(zone)s
                 AND r.administered_at
                     < (o.due_on + o.window_days + 2)::timestamp AT TIME ZONE %(zone)s
                 AND (r.administered_at AT TIME ZONE %(zone)s)::date
                     BETWEEN o.due_on - o.window_days AND o.due_on + o.window_days
           ) AS versions
    FROM occasion o
    WHERE o.due_on <= %(today)s
)
SELECT a.days, a.label, i.instrument_id, count(*) AS due,
       count(*) FILTER (WHERE a.versions && i.versions::bigint[]) AS answered
FROM answered a
JOIN unnest(%(instrument_entries)s::int[], %(instruments)s::int[], %(versions)s::text[])
     AS i(entry, instrument_id, versions) ON i.entry = a.entry
GROUP BY a.days, a.label, i.instrument_id
"""


def completion_by_time_point(*, program, today=None) -> list[dict]:
    """The program's follow-up completion: per time point of its schedule (not the recurring
    measures) and instrument, how many patients were due and how many answered within the
    window. Clinician-rated instruments count too, although they are not e-mailed. Patients
    who withdrew are left out of both numbers. The same few queries whatever the number of
    members or responses; `calendar_items` gives the same answer one patient at a
    time."""
    today = today or timezone.localdate()
    schedule = (program.protocol.measurement_schedule or []) if program.protocol_id else []
    entries = [entry for entry in schedule if entry["kind"] == schedules.ScheduleKind.OFFSETS]
    if not entries:
        return []
    instruments = {
        i.code: i
        for i in Instrument.objects.filter(
            code__in={code for entry in entries for code in entry["instruments"]}
        ).annotate(version_ids=ArrayAgg("versions__id", default=[]))
    }
    points = [
        (number, entry["anchor"], point["days"], point.get("window_days", 0), point["label"])
        for number, entry in enumerate(entries)
        for point in entry["time_points"]
    ]
    asked = [
        (number, instruments[code].pk)
        for number, entry in enumerate(entries)
        for code in dict.fromkeys(entry["instruments"])
        if code in instruments
    ]
    by_pk = {i.pk: i for i in instruments.values()}
    sql = _COMPLETION_SQL.format(
        enrolment=Enrolment._meta.db_table,
        session=Session._meta.db_table,
        response=Response._meta.db_table,
    )
    params = {
        "zone": timezone.get_current_timezone_name(),
        "dosing": SessionKind.DOSING.value,
        "not_held": [Session.Status.CANCELLED.value, Session.Status.NO_SHOW.value],
        "program": program.pk,
        "withdrawn": Enrolment.Status.WITHDRAWN.value,
        "enrolment": ScheduleAnchor.ENROLMENT.value,
        "first_dosing": ScheduleAnchor.FIRST_DOSING.value,
        "last_dosing": ScheduleAnchor.LAST_DOSING.value,
        "point_entries": [number for number, _, _, _, _ in points],
        "anchors": [anchor for _, anchor, _, _, _ in points],
        "days": [days for _, _, days, _, _ in points],
        "windows": [window for _, _, _, window, _ in points],
        "labels": [label for _, _, _, _, label in points],
        "instrument_entries": [number for number, _ in asked],
        "instruments": [pk for _, pk in asked],
        "versions": [
            "{" + ",".join(str(v) for v in by_pk[pk].version_ids if v is not None) + "}"
            for _, pk in asked
        ],
        "today": today,
    }
    # Its estimated cost crosses PostgreSQL's JIT threshold, and compiling costs more (about
    # 150 ms at 7,000 members) than the query saves by it.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, params)
        tallies = cursor.fetchall()
    counts: dict[tuple, list[int]] = {}
    for days, label, instrument_id, due, answered in tallies:
        tally = counts.setdefault((days, label, by_pk[instrument_id].short_name), [0, 0])
        tally[0] += answered
        tally[1] += due
    return [
        {"time_point": label, "instrument": name, "answered": answered, "due": due}
        for (_offset, label, name), (answered, due) in sorted(counts.items())
    ]


# Beat counts every five minutes (`services.completion_summaries_refresh`); a count older
# than this means beat is not running, and the page counts for itself.
COMPLETION_SUMMARY_FRESH = datetime.timedelta(minutes=15)


@dataclasses.dataclass(frozen=True)
class ProgramCompletion:
    rows: list[dict]
    counted_at: datetime.datetime  # shown on the page: the count may be minutes old


def program_completion(*, program, now=None) -> ProgramCompletion:
    """`completion_by_time_point` for the program page: as beat last counted it, when that
    was in the last quarter of an hour, for today and against the program's current schedule
    (so a new answer shows within about five minutes); counted afresh otherwise."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    schedule = (program.protocol.measurement_schedule or []) if program.protocol_id else []
    summary = CompletionSummary.objects.filter(
        program=program, counted_for=today, counted_at__gte=now - COMPLETION_SUMMARY_FRESH
    ).first()
    if summary is not None and summary.schedule == schedule:
        return ProgramCompletion(rows=summary.rows, counted_at=summary.counted_at)
    return ProgramCompletion(
        rows=completion_by_time_point(program=program, today=today), counted_at=now
    )


def delivery_log(*, patient) -> list[dict]:
    """Every questionnaire link of the patient with what happened to it, newest first:
    sent, reminded, opened, answered, expired or bounced."""
    now = timezone.now()
    rows = []
    for link in SelfReportLink.objects.filter(patient=patient).select_related("session"):
        events = []
        if link.sent_at:
            events.append(f"sent {_when(link.sent_at)}")
        elif link.by_email and link.failed_attempts:
            events.append(
                f"bounced {link.failed_attempts} time{'s' if link.failed_attempts > 1 else ''}"
                f" (last {_when(link.last_failure_at)}: {link.last_failure}); retrying"
                if link.failed_attempts < SelfReportLink.MAX_SEND_ATTEMPTS
                else f"bounced {link.failed_attempts} times (last {link.last_failure}); "
                "given up: please contact the patient"
            )
        elif not link.by_email:
            events.append(f"created by staff {_when(link.created_at)}")
        else:
            events.append("waiting to be sent")
        if link.reminders_sent:
            events.append(
                f"reminded {link.reminders_sent} of {link.reminders} "
                f"(last {_when(link.last_sent_at)})"
            )
        if link.opened_at:
            events.append(f"opened {_when(link.opened_at)}")
        if link.used_at:
            events.append(f"answered {_when(link.used_at)}")
        elif link.expires_at <= now:
            events.append(f"expired {_when(link.expires_at)}")
        else:
            events.append(f"open until {_when(link.expires_at)}")
        rows.append(
            {
                "link": link,
                "occasion": link.time_point
                or (str(link.session) if link.session_id else "Staff link"),
                "instruments": ", ".join(code.upper() for code in link.instruments),
                "events": events,
            }
        )
    return rows


def _when(moment) -> str:
    local = timezone.localtime(moment)
    return f"{local.day} {local:%b %Y, %H:%M}"


def plannable_instruments() -> QuerySet[Instrument]:
    """The questionnaires a protocol step may ask for, for the protocol pages."""
    return Instrument.objects.order_by("code")
