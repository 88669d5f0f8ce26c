"""Reads about flags for the people who act on them: one flag, a patient's history and
trajectory, the worklist across patients, the counts in the navigation."""

import datetime
from dataclasses import dataclass

from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Value,
    When,
)
from django.http import Http404
from django.utils import timezone

from clinic.access import can_manage_programs, patients_visible_to, sees_all_patients
from clinic.models import AssignmentRole, CoachAssignment, Enrolment, Patient, Program
from outcomes import scoring
from outcomes.models import Response
from sessions.models import AdverseEvent, Attendance, Session, SessionKind

from .flag_inputs import session_label
from .models import AdverseEventTally, FhirExport, Flag, FlagRule
from .statistics import wilson_interval
from .summary import response_ids, severity_reason, summarise


def flag_rule_for_editing(*, program_id: int | None) -> FlagRule:
    """The program's rule, or an unsaved copy of the clinic default to start from."""
    if program_id is not None and not Program.objects.filter(pk=program_id).exists():
        raise Http404("No such program.")
    rule = FlagRule.objects.filter(program_id=program_id).first()
    if rule is not None:
        return rule
    default = FlagRule.objects.filter(program__isnull=True).first() or FlagRule()
    default.pk = None
    default.program_id = program_id
    return default


def flag_for(*, user, public_id) -> Flag:
    try:
        return Flag.objects.select_related(
            "patient", "dosing_session", "acknowledged_by", "resolved_by"
        ).get(public_id=public_id, patient__in=patients_visible_to(user))
    except (Flag.DoesNotExist, ValueError) as exc:
        raise Http404("No such flag.") from exc


def flag_summary(flag: Flag) -> str:
    return summarise(flag.kind, flag.evidence)


@dataclass(frozen=True)
class FlagPage:
    """What the flag page shows beside the evidence: why this severity, the ratings it names,
    the sessions involved, and (for admins) the two usual ways to act before the dosing."""

    severity_reason: str
    ratings: list  # Response rows, in the order the evidence names them
    sessions: list  # the dosing first, then the sessions the ratings were given at
    enrolment: Enrolment | None
    lead: CoachAssignment | None
    may_act: bool


def flag_page(*, flag: Flag, user) -> FlagPage:
    """`flag` comes from `flag_for`, already scoped to the user."""
    ids = response_ids(flag.evidence)
    found = {
        r.pk: r
        for r in Response.objects.filter(pk__in=ids, patient=flag.patient).select_related(
            "version__instrument", "session"
        )
    }
    ratings = [found[pk] for pk in ids if pk in found]
    sessions = [flag.dosing_session] if flag.dosing_session else []
    later = [d["session_id"] for d in flag.evidence.get("dosings", [])[1:]]
    sessions += list(Session.objects.filter(pk__in=later).order_by("scheduled_start"))
    for rating in ratings:
        if rating.session is not None and rating.session not in sessions:
            sessions.append(rating.session)
    dosing = flag.dosing_session
    if dosing is not None and dosing.enrolment_id:
        enrolment = dosing.enrolment
    else:
        enrolment = (
            flag.patient.enrolments.filter(status=Enrolment.Status.ACTIVE)
            .order_by("-start_date", "-id")
            .first()
        )
    lead = (
        enrolment.assignments.filter(role=AssignmentRole.LEAD, end_date__isnull=True)
        .select_related("coach")
        .first()
        if enrolment is not None
        else None
    )
    return FlagPage(
        severity_reason=severity_reason(flag.kind, flag.severity, flag.evidence),
        ratings=ratings,
        sessions=sessions,
        enrolment=enrolment,
        lead=lead,
        may_act=can_manage_programs(user) and flag.is_unresolved,
    )


def flag_history(*, patient: Patient) -> list[dict]:
    flags = Flag.objects.filter(patient=patient).order_by("-raised_at", "-id")
    return [{"flag": flag, "summary": flag_summary(flag)} for flag in flags]


SEVERITY_ORDER = Case(
    *(When(severity=severity, then=Value(rank)) for severity, rank in Flag.SEVERITY_RANK.items()),
    output_field=IntegerField(),
)


@dataclass(frozen=True)
class TrajectoryPoint:
    response_id: int
    at: datetime.datetime
    session_label: str
    session_kind: str
    value: float | None
    change_from_first: float | None
    change_from_previous: float | None
    reliable_change: str  # "improved", "no reliable change", "deteriorated" or ""


@dataclass(frozen=True)
class Trajectory:
    measure: str  # "wai-sr" or "srs"
    scale: str  # total, bond, goal, task
    points: list[TrajectoryPoint]


def _series(responses, *, code: str, scale: str, use_mean: bool) -> Trajectory:
    definition = None
    points: list[TrajectoryPoint] = []
    first = previous = None
    for response in responses:
        if response.version.instrument.code != code:
            continue
        definition = response.version.definition
        score = next((s for s in response.scores.all() if s.scale == scale), None)
        value = (score.mean if use_mean else score.value) if score else None
        status = ""
        if value is not None and previous is not None and definition.get("rci_scale") == scale:
            try:
                status = scoring.reliable_change(definition, previous, value)
            except ValueError:
                status = ""
        points.append(
            TrajectoryPoint(
                response_id=response.pk,
                at=response.administered_at,
                session_label=session_label(response.session),
                session_kind=response.session.kind if response.session else "",
                value=value,
                change_from_first=None
                if value is None or first is None
                else round(value - first, 2),
                change_from_previous=None
                if value is None or previous is None
                else round(value - previous, 2),
                reliable_change=status,
            )
        )
        if value is not None:
            first = value if first is None else first
            previous = value
    return Trajectory(measure=code, scale=scale, points=points)


def trajectories(*, patient: Patient) -> list[Trajectory]:
    """WAI-SR total, bond, goal and task (item means, 1-5) and SRS totals, oldest first."""
    responses = list(
        Response.objects.filter(patient=patient, version__instrument__code__in=["wai-sr", "srs"])
        .select_related("version__instrument", "session")
        .prefetch_related("scores")
        .order_by("administered_at", "id")
    )
    series = [
        _series(responses, code="wai-sr", scale=scale, use_mean=True)
        for scale in ("total", "bond", "goal", "task")
    ]
    series.append(_series(responses, code="srs", scale="total", use_mean=False))
    return series


def latest_before_dosing(*, patient: Patient, series: list[Trajectory]) -> list[dict]:
    """For each upcoming dosing: the last bond and total rated before it."""
    dosings = Session.objects.filter(
        attendances__patient=patient,
        kind=SessionKind.DOSING,
        status=Session.Status.SCHEDULED,
        scheduled_start__gte=timezone.now(),
    ).order_by("scheduled_start")
    by_scale = {(t.measure, t.scale): t for t in series}
    rows = []
    for dosing in dosings:
        row = {"dosing": dosing}
        for key in (("wai-sr", "bond"), ("wai-sr", "total"), ("srs", "total")):
            before = [
                p
                for p in by_scale[key].points
                if p.value is not None and p.at < dosing.scheduled_start
            ]
            row["_".join(key).replace("-", "")] = before[-1] if before else None
        rows.append(row)
    return rows


SAFETY_KINDS = (Flag.Kind.SAFETY, Flag.Kind.SAFETY_UNANSWERED)


def flag_worklist(*, user, kind: str = "", program_id=None, coach_id=None) -> QuerySet[Flag]:
    """Every open and acknowledged flag the user may see, whatever the patient's status:
    safety first, then the most severe, then the nearest dosing, then the oldest."""
    flags = Flag.objects.filter(status__in=Flag.UNRESOLVED, patient__in=patients_visible_to(user))
    if kind:
        flags = flags.filter(kind=kind)
    if program_id:
        flags = flags.filter(
            patient__in=Enrolment.objects.filter(program_id=program_id).values("patient_id")
        )
    if coach_id:
        flags = flags.filter(
            patient__in=Enrolment.objects.filter(
                assignments__coach_id=coach_id, assignments__end_date__isnull=True
            ).values("patient_id")
        )
    return (
        flags.annotate(
            safety_first=Case(
                When(kind__in=SAFETY_KINDS, then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            ),
            severity_rank=SEVERITY_ORDER,
        )
        .select_related("patient", "dosing_session")
        .order_by(
            "safety_first",
            "severity_rank",
            F("dosing_session__scheduled_start").asc(nulls_last=True),
            "raised_at",
            "id",
        )
    )


def flag_counts(*, user) -> dict[str, int]:
    """For the navigation: open and acknowledged flags the user may see, and how many of them
    are about safety."""
    flags = Flag.objects.filter(status__in=Flag.UNRESOLVED)
    if not sees_all_patients(user):
        # Clinicians and admins see every patient: filtering by them joined the whole
        # patient table, on every page, only to keep every flag.
        flags = flags.filter(patient__in=patients_visible_to(user))
    return flags.aggregate(
        open=Count("id"),
        safety=Count("id", filter=Q(kind__in=SAFETY_KINDS)),
    )


@dataclass(frozen=True)
class EventRate:
    label: str
    dosings_with: int
    dosings: int
    percent: float | None
    low: float | None  # Wilson 95% interval, percent
    high: float | None


def _rate(label: str, k: int, n: int) -> EventRate:
    if not n:
        return EventRate(label, k, n, None, None, None)
    low, high = wilson_interval(k, n)
    return EventRate(label, k, n, 100 * k / n, 100 * low, 100 * high)


def adverse_event_tally(*, program: Program) -> dict[str, int]:
    """Counted now, for one program: `dosings` (patients present at a completed dosing) and
    how many of those had any adverse event (`any`), a moderate or worse one (`worse`) and a
    serious one (`serious`).

    A place is one patient present at one dosing (attendance is unique per session and
    patient), and it counts once however many events it had: one aggregate query, so the
    page does not load the program's dosings and events to count them."""
    events = AdverseEvent.objects.all()

    def places_with(events):
        # Uncorrelated: the database finds the few places with events once, starting from
        # the events. Asked per place (EXISTS for each present patient, three times over), the
        # plan cost enough to be compiled by JIT on every count: 110-145 ms against 27-36 at
        # 10,000 patients.
        return Attendance.objects.filter(
            Exists(
                events.filter(session_id=OuterRef("session_id"), patient_id=OuterRef("patient_id"))
            )
        ).values("pk")

    return Attendance.objects.filter(
        session__program=program,
        session__kind=SessionKind.DOSING,
        session__status=Session.Status.COMPLETED,
        status__in=Attendance.PRESENT,
    ).aggregate(
        dosings=Count("pk"),
        any=Count("pk", filter=Q(pk__in=places_with(events))),
        worse=Count(
            "pk",
            filter=Q(
                pk__in=places_with(
                    events.filter(
                        grade__in=[
                            AdverseEvent.Grade.MODERATE,
                            AdverseEvent.Grade.SEVERE,
                            AdverseEvent.Grade.LIFE_THREATENING,
                        ]
                    )
                )
            ),
        ),
        serious=Count("pk", filter=Q(pk__in=places_with(events.filter(serious=True)))),
    )


def _rates(tally) -> list[EventRate]:
    n = tally["dosings"]
    return [
        _rate("Any adverse event", tally["any"], n),
        _rate("Moderate or worse", tally["worse"], n),
        _rate("Serious", tally["serious"], n),
    ]


def adverse_event_rates(*, program: Program) -> list[EventRate]:
    """Per completed dosing of the program, counted now: the share with any adverse event,
    with a moderate-or-worse one and with a serious one, each with a Wilson 95% interval."""
    return _rates(adverse_event_tally(program=program))


# Beat counts every five minutes (`services.adverse_event_tallies_refresh`); a count older
# than three of those means beat has stopped, and the page counts for itself.
ADVERSE_EVENT_TALLY_FRESH = datetime.timedelta(minutes=15)


@dataclass(frozen=True)
class ProgramEventRates:
    rates: list[EventRate]
    counted_at: datetime.datetime


def program_adverse_events(*, program: Program, now=None) -> ProgramEventRates:
    """`adverse_event_rates` for the program page: as beat last counted them when that was in
    the last quarter of an hour, counted afresh otherwise; the page says when."""
    now = now or timezone.now()
    stored = AdverseEventTally.objects.filter(
        program=program, counted_at__gte=now - ADVERSE_EVENT_TALLY_FRESH
    ).first()
    if stored is not None:
        tally = {name: getattr(stored, name) for name in ("dosings", "any", "worse", "serious")}
        return ProgramEventRates(rates=_rates(tally), counted_at=stored.counted_at)
    return ProgramEventRates(rates=adverse_event_rates(program=program), counted_at=now)


def recent_fhir_exports(*, user, limit: int = 5) -> list[FhirExport]:
    """The person's latest FHIR exports, newest first, for the exports page."""
    return list(FhirExport.objects.filter(requested_by=user)[:limit])
