"""Reads for flags: one patient's facts for the rules, and flags scoped to the user."""

import datetime
from dataclasses import dataclass

from django.db import connection
from django.db.models import (
    Case,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from clinic.access import patients_visible_to
from clinic.models import Enrolment, Patient, Program
from outcomes import scoring
from outcomes.models import Response, Score
from sessions.models import Attendance, Session, SessionKind

from . import analytics, charts, rules
from .exports import pseudonym_of
from .models import Flag, FlagRule
from .summary import summarise


def flag_rule_for(*, patient: Patient) -> FlagRule | None:
    program_ids = patient.enrolments.filter(status=Enrolment.Status.ACTIVE).values("program")
    rule = FlagRule.objects.filter(program__in=program_ids).order_by("pk").first()
    return rule or FlagRule.objects.filter(program__isnull=True).first()


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


def _session_label(session: Session | None) -> str:
    return (session.label or session.get_kind_display()) if session else ""


def _scores(response: Response) -> dict[str, object]:
    return {s.scale: s for s in response.scores.all()}


def clinic_bond_percentile(percentile: int) -> tuple[float | None, int]:
    """The clinic's own percentile of WAI-SR bond means, over every rating."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT percentile_cont(%s) WITHIN GROUP (ORDER BY s.mean), count(*)
            FROM outcomes_score s
            JOIN outcomes_response r ON r.id = s.response_id
            JOIN outcomes_instrumentversion v ON v.id = r.version_id
            JOIN outcomes_instrument i ON i.id = v.instrument_id
            WHERE i.code = 'wai-sr' AND s.scale = 'bond' AND s.mean IS NOT NULL
            """,
            [percentile / 100],
        )
        value, count = cursor.fetchone()
    return (float(value) if value is not None else None), count


def _resolved_safety_responses(patient: Patient) -> set[int]:
    covered = set()
    for evidence in Flag.objects.filter(
        patient=patient, kind=Flag.Kind.SAFETY, status=Flag.Status.RESOLVED
    ).values_list("evidence", flat=True):
        covered.update(hit["response_id"] for hit in evidence.get("hits", []))
    return covered


def flag_facts(*, patient: Patient, now: datetime.datetime, percentile: int = 20) -> rules.Facts:
    responses = list(
        Response.objects.filter(patient=patient, administered_at__lte=now)
        .select_related("version__instrument", "session")
        .prefetch_related("scores")
        .order_by("administered_at", "id")
    )
    alliance, srs, safety = [], [], []
    resolved = _resolved_safety_responses(patient)
    for response in responses:
        code = response.version.instrument.code
        scores = _scores(response)
        if code == "wai-sr":
            bond, total = scores.get("bond"), scores.get("total")
            alliance.append(
                rules.AlliancePoint(
                    response_id=response.pk,
                    at=response.administered_at,
                    bond=bond.mean if bond else None,
                    total=total.mean if total else None,
                    session_id=response.session_id,
                    session_kind=response.session.kind if response.session else "",
                    session_label=_session_label(response.session),
                )
            )
        elif code == "srs" and scores.get("total") and scores["total"].value is not None:
            srs.append(
                rules.SrsPoint(
                    response_id=response.pk,
                    at=response.administered_at,
                    total=scores["total"].value,
                    session_id=response.session_id,
                    session_label=_session_label(response.session),
                )
            )
        if response.has_safety_hit and response.pk not in resolved:
            safety.extend(
                rules.SafetyHit(
                    response_id=response.pk,
                    at=response.administered_at,
                    instrument=code,
                    item=hit["item"],
                    value=hit["value"],
                    urgent=hit["urgent"],
                )
                for hit in response.safety_hits
            )
    mine = Session.objects.filter(attendances__patient=patient).exclude(
        attendances__status=Attendance.Status.CANCELLED
    )
    dosings = [
        rules.Dosing(session_id=pk, start=start)
        for pk, start in mine.filter(
            kind=SessionKind.DOSING, status=Session.Status.SCHEDULED
        ).values_list("pk", "scheduled_start")
    ]
    preparations = list(
        mine.filter(kind=SessionKind.PREPARATION, status=Session.Status.COMPLETED).values_list(
            "scheduled_start", flat=True
        )
    )
    value, count = clinic_bond_percentile(percentile)
    return rules.Facts(
        now=now,
        alliance=alliance,
        srs=srs,
        safety=safety,
        dosings=dosings,
        preparations=preparations,
        clinic_bond_percentile=value,
        clinic_bond_ratings=count,
    )


def flag_for(*, user, public_id) -> Flag:
    try:
        return Flag.objects.select_related(
            "patient", "dosing_session", "acknowledged_by", "resolved_by"
        ).get(public_id=public_id, patient__in=patients_visible_to(user))
    except (Flag.DoesNotExist, ValueError) as exc:
        raise Http404("No such flag.") from exc


def flag_summary(flag: Flag) -> str:
    return summarise(flag.kind, flag.evidence)


def flag_history(*, patient: Patient) -> list[dict]:
    flags = Flag.objects.filter(patient=patient).order_by("-raised_at", "-id")
    return [{"flag": flag, "summary": flag_summary(flag)} for flag in flags]


def unnotified_flag_ids() -> list[int]:
    return list(
        Flag.objects.filter(status=Flag.Status.OPEN, notified_at__isnull=True).values_list(
            "pk", flat=True
        )
    )


def patients_with_dosing_within(*, days: int) -> list[int]:
    now = timezone.now()
    return list(
        Attendance.objects.filter(
            session__kind=SessionKind.DOSING,
            session__status=Session.Status.SCHEDULED,
            session__scheduled_start__gte=now,
            session__scheduled_start__lte=now + datetime.timedelta(days=days),
        )
        .exclude(status=Attendance.Status.CANCELLED)
        .values_list("patient_id", flat=True)
        .distinct()
    )


def patients_in_care_ids() -> list[int]:
    return list(
        Patient.objects.filter(status__in=Patient.ACTIVE_STATUSES).values_list("pk", flat=True)
    )


_SEVERITY_RANK = Case(
    *(When(severity=severity, then=Value(rank)) for severity, rank in Flag.SEVERITY_RANK.items()),
    output_field=IntegerField(),
)
# Open flags that put the next dosing at risk; an unresolved safety answer always does.
DOSING_KINDS = (
    Flag.Kind.WEAK_BOND,
    Flag.Kind.BOND_DROP,
    Flag.Kind.ALLIANCE_MISSING,
    Flag.Kind.SAFETY,
)


def with_flags_and_readiness(patients: QuerySet[Patient]) -> QuerySet[Patient]:
    """Caseload order: open flags first (most severe), then the nearest dosing, then name.

    Adds `flag_rank`, `next_dosing_at`, `latest_bond` and the prefetched `open_flags`, from
    which `readiness()` reads without further queries.
    """
    unresolved = Flag.objects.filter(status__in=Flag.UNRESOLVED)
    top_rank = (
        unresolved.filter(patient=OuterRef("pk"))
        .annotate(rank=_SEVERITY_RANK)
        .order_by("rank")
        .values("rank")[:1]
    )
    next_dosing = (
        Session.objects.filter(
            attendances__patient=OuterRef("pk"),
            kind=SessionKind.DOSING,
            status=Session.Status.SCHEDULED,
            scheduled_start__gte=timezone.now(),
        )
        .order_by("scheduled_start")
        .values("scheduled_start")[:1]
    )
    latest_bond = (
        Score.objects.filter(
            response__patient=OuterRef("pk"),
            response__version__instrument__code="wai-sr",
            scale="bond",
        )
        .order_by("-response__administered_at")
        .values("mean")[:1]
    )
    return (
        patients.annotate(
            flag_rank=Subquery(top_rank),
            next_dosing_at=Subquery(next_dosing),
            latest_bond=Subquery(latest_bond),
        )
        .prefetch_related(
            Prefetch(
                "flags",
                queryset=unresolved.select_related("dosing_session").order_by("-raised_at"),
                to_attr="open_flags",
            )
        )
        .order_by(
            F("flag_rank").asc(nulls_last=True),
            F("next_dosing_at").asc(nulls_last=True),
            "last_name",
            "first_name",
            "pk",
        )
    )


def readiness(patient: Patient) -> str:
    """For the next dosing: 'at risk' (an open alliance flag), 'not measured' (no WAI-SR bond
    rating yet), 'ready', or '' when no dosing is scheduled."""
    if getattr(patient, "next_dosing_at", None) is None:
        return ""
    if any(flag.kind in DOSING_KINDS for flag in patient.open_flags):
        return "at risk"
    if patient.latest_bond is None:
        return "not measured"
    return "ready"


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
                session_label=_session_label(response.session),
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


def flag_badges(patient: Patient) -> list[dict]:
    """One badge per kind of open flag (most severe first), linking to the newest of them."""
    grouped: dict[str, dict] = {}
    for flag in patient.open_flags:
        badge = grouped.setdefault(flag.kind, {"flag": flag, "count": 0, "rank": 9})
        badge["count"] += 1
        rank = Flag.SEVERITY_RANK[flag.severity]
        if rank < badge["rank"]:
            badge.update(rank=rank, flag=flag)
    return sorted(grouped.values(), key=lambda b: b["rank"])


def dashboard_facts(*, patient: Patient) -> charts.DashboardFacts:
    """Everything the patient dashboard draws, in a fixed number of queries."""
    now = timezone.now()
    responses = (
        Response.objects.filter(patient=patient)
        .select_related("version__instrument", "session")
        .prefetch_related("scores")
        .order_by("administered_at", "id")
    )
    rows = [
        charts.ResponseRow(
            response_id=response.pk,
            at=timezone.localtime(response.administered_at),
            code=response.version.instrument.code,
            definition=response.version.definition,
            scores={s.scale: (s.value, s.mean, s.band) for s in response.scores.all()},
            extras=response.extras,
            session_id=response.session_id,
            session_label=_session_label(response.session),
        )
        for response in responses
    ]
    # Per attendance, not per session: a cancelled place in a group circle hides only this
    # patient's mark, not the circle for everyone.
    attendances = (
        Attendance.objects.filter(patient=patient)
        .exclude(status=Attendance.Status.CANCELLED)
        .exclude(session__status=Session.Status.CANCELLED)
        .select_related("session")
        .order_by("session__scheduled_start")
    )
    sessions = [
        charts.SessionMark(
            session_id=a.session_id,
            at=timezone.localtime(a.session.scheduled_start),
            kind=a.session.kind,
            label=_session_label(a.session),
            status=a.session.get_status_display().lower(),
            upcoming=a.session.status == Session.Status.SCHEDULED
            and a.session.scheduled_start >= now,
        )
        for a in attendances
    ]
    flags = [
        charts.FlagMark(
            at=timezone.localtime(flag.raised_at),
            kind=flag.get_kind_display(),
            severity=flag.get_severity_display(),
            status=flag.get_status_display(),
            is_open=flag.is_unresolved,
            summary=flag_summary(flag),
            url=reverse("flag_detail", args=[flag.public_id]),
        )
        for flag in Flag.objects.filter(patient=patient).order_by("raised_at", "id")
    ]
    rule = flag_rule_for(patient=patient) or FlagRule()
    return charts.DashboardFacts(
        responses=rows,
        sessions=sessions,
        flags=flags,
        bond_threshold=rule.weak_bond_below,
    )


def upcoming_dosings(facts: charts.DashboardFacts) -> list[charts.SessionMark]:
    return [s for s in facts.sessions if s.kind == SessionKind.DOSING and s.upcoming]


def cohort_rows(
    *,
    user,
    depression: str,
    program: Program | None = None,
    modality: str = "",
    start: datetime.date | None = None,
    end: datetime.date | None = None,
) -> tuple[list[analytics.DosingRow], list[analytics.ScoreRow]]:
    """Completed dosings attended in the chosen program, modality and dates, and the scores
    the analytics need for those patients: two queries, whatever the size of the cohort."""
    attended = Attendance.objects.filter(
        patient__in=patients_visible_to(user),
        session__kind=SessionKind.DOSING,
        session__status=Session.Status.COMPLETED,
    ).exclude(status__in=[Attendance.Status.ABSENT, Attendance.Status.CANCELLED])
    if program is not None:
        attended = attended.filter(session__program=program)
    if modality:
        attended = attended.filter(session__program__modality=modality)
    if start is not None:
        attended = attended.filter(session__scheduled_start__date__gte=start)
    if end is not None:
        attended = attended.filter(session__scheduled_start__date__lte=end)
    dosings = [
        analytics.DosingRow(patient_id=pid, pseudonym=pseudonym_of(public_id), at=at)
        for pid, public_id, at in attended.values_list(
            "patient_id", "patient__public_id", "session__scheduled_start"
        )
    ]
    scores = [
        analytics.ScoreRow(patient_id=pid, code=code, scale=scale, value=value, mean=mean, at=at)
        for pid, code, scale, value, mean, at in Score.objects.filter(
            response__patient__in=attended.values("patient_id"),
            response__version__instrument__code__in=[*analytics.INSTRUMENTS, depression],
            scale__in=[scale for scale, _ in analytics.ALLIANCE_SCALES],
        ).values_list(
            "response__patient_id",
            "response__version__instrument__code",
            "scale",
            "value",
            "mean",
            "response__administered_at",
        )
    ]
    return dosings, scores
