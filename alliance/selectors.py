"""Reads for flags: one patient's facts for the rules, and flags scoped to the user."""

import datetime
from dataclasses import dataclass

from django.db import connection
from django.db.models import (
    Case,
    Count,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
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
from outcomes.models import Instrument, Response, Score
from sessions.models import Attendance, Session, SessionKind

from . import analytics, charts, readiness, rules
from .exports import pseudonym_of
from .models import DEFAULTS, Flag, FlagRule, StalePatient
from .summary import summarise


def flag_rule_for(*, patient: Patient) -> FlagRule | None:
    program_ids = patient.enrolments.filter(status=Enrolment.Status.ACTIVE).values("program")
    rule = FlagRule.objects.filter(program__in=program_ids).order_by("pk").first()
    return rule or FlagRule.objects.filter(program__isnull=True).first()


def patients_under_rule(*, rule: FlagRule) -> list[int]:
    """Patients whose flags this rule decides: the program's active members, or for the
    clinic default everyone to sweep whose programs have no rule of their own."""
    active = Enrolment.objects.filter(status=Enrolment.Status.ACTIVE)
    if rule.program_id is not None:
        members = active.filter(program_id=rule.program_id).values("patient_id")
        return list(Patient.objects.filter(pk__in=members).values_list("pk", flat=True))
    ruled = set(
        active.filter(program__flag_rule__isnull=False).values_list("patient_id", flat=True)
    )
    return [pk for pk in patients_to_sweep_ids() if pk not in ruled]


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


def clinic_bond_percentiles(percentiles) -> dict[int, tuple[float | None, int]]:
    """The clinic's own percentiles of WAI-SR bond means over every rating, in one pass:
    {percentile: (value, number of ratings)}. A sweep asks once for every program's."""
    wanted = sorted(set(percentiles))
    if not wanted:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT percentile_cont(%s::float8[]) WITHIN GROUP (ORDER BY s.mean), count(*)
            FROM outcomes_score s
            JOIN outcomes_response r ON r.id = s.response_id
            JOIN outcomes_instrumentversion v ON v.id = r.version_id
            JOIN outcomes_instrument i ON i.id = v.instrument_id
            WHERE i.code = 'wai-sr' AND s.scale = 'bond' AND s.mean IS NOT NULL
            """,
            [[p / 100 for p in wanted]],
        )
        values, count = cursor.fetchone()
    values = values or [None] * len(wanted)
    return {
        p: (float(v) if v is not None else None, count) for p, v in zip(wanted, values, strict=True)
    }


def rule_percentiles() -> list[int]:
    """Every percentile a flag rule uses (the default's too), for one pass per sweep."""
    return sorted({*FlagRule.objects.values_list("percentile", flat=True), DEFAULTS.percentile})


def _resolved_safety_responses(patient: Patient) -> dict[str, set[int]]:
    """Per kind (safety, safety_unanswered): responses a person has dealt with."""
    covered = {Flag.Kind.SAFETY: set(), Flag.Kind.SAFETY_UNANSWERED: set()}
    for kind, evidence in Flag.objects.filter(
        patient=patient, kind__in=list(covered), status=Flag.Status.RESOLVED
    ).values_list("kind", "evidence"):
        covered[kind].update(rules.basis(kind, evidence))
    return covered


def flag_facts(
    *, patient: Patient, now: datetime.datetime, clinic_bond: tuple[float | None, int]
) -> rules.Facts:
    """Everything the rules read for one patient; `clinic_bond` is the clinic's percentile
    of bond means at the patient's program's percentile, and the number of ratings."""
    responses = list(
        Response.objects.filter(patient=patient, administered_at__lte=now)
        .select_related("version__instrument", "session")
        .prefetch_related("scores")
        .order_by("administered_at", "id")
    )
    alliance, srs, safety, gaps = [], [], [], []
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
        if response.has_safety_hit and response.pk not in resolved[Flag.Kind.SAFETY]:
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
        if response.safety_unanswered and response.pk not in resolved[Flag.Kind.SAFETY_UNANSWERED]:
            total = scores.get("total")
            gaps.extend(
                rules.SafetyGap(
                    response_id=response.pk,
                    at=response.administered_at,
                    instrument=code,
                    item=item,
                    total_given=bool(total and total.value is not None),
                )
                for item in response.safety_unanswered
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
    value, count = clinic_bond
    return rules.Facts(
        now=now,
        alliance=alliance,
        srs=srs,
        safety=safety,
        safety_unanswered=gaps,
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


def stale_patient_ids(*, limit: int = 1000) -> list[int]:
    """The outbox, oldest first."""
    return list(StalePatient.objects.order_by("since").values_list("patient_id", flat=True)[:limit])


def patients_to_sweep_ids() -> list[int]:
    """Every patient in care, and anyone else with a flag still open (a completed or
    withdrawn patient's flags must still clear or stay visible, never hang)."""
    with_open_flags = Flag.objects.filter(status__in=Flag.UNRESOLVED).values("patient_id")
    return list(
        Patient.objects.filter(
            Q(status__in=Patient.ACTIVE_STATUSES) | Q(pk__in=with_open_flags)
        ).values_list("pk", flat=True)
    )


_SEVERITY_RANK = Case(
    *(When(severity=severity, then=Value(rank)) for severity, rank in Flag.SEVERITY_RANK.items()),
    output_field=IntegerField(),
)


def with_flags_and_next_dosing(patients: QuerySet[Patient]) -> QuerySet[Patient]:
    """Caseload order: open flags first (most severe), then the nearest dosing, then name.

    Adds `flag_rank`, `next_dosing_id`, `next_dosing_at`, `latest_bond` and the prefetched
    `open_flags`; `attach_readiness` then answers for the next dosings of a page at once.
    """
    unresolved = Flag.objects.filter(status__in=Flag.UNRESOLVED)
    top_rank = (
        unresolved.filter(patient=OuterRef("pk"))
        .annotate(rank=_SEVERITY_RANK)
        .order_by("rank")
        .values("rank")[:1]
    )
    next_dosing = Session.objects.filter(
        attendances__patient=OuterRef("pk"),
        kind=SessionKind.DOSING,
        status=Session.Status.SCHEDULED,
        scheduled_start__gte=timezone.now(),
    ).order_by("scheduled_start")
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
            next_dosing_id=Subquery(next_dosing.values("pk")[:1]),
            next_dosing_public_id=Subquery(next_dosing.values("public_id")[:1]),
            next_dosing_at=Subquery(next_dosing.values("scheduled_start")[:1]),
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


def attach_readiness(patients) -> None:
    """Set `readiness` (a Readiness, or None without a dosing ahead) and `flag_badges` on
    patients that came through `with_flags_and_next_dosing`."""
    answers = dosing_readiness(
        [Session(pk=p.next_dosing_id) for p in patients if p.next_dosing_id is not None]
    )
    for patient in patients:
        patient.readiness = answers.get(patient.next_dosing_id)
        patient.flag_badges = flag_badges(patient)


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


# --- dosing readiness ------------------------------------------------------------------------

_PRESENT = (Attendance.Status.ATTENDED, Attendance.Status.LATE)


def _flag_fact(flag: Flag) -> readiness.FlagFact:
    return readiness.FlagFact(
        public_id=str(flag.public_id),
        kind=flag.kind,
        label=flag.get_kind_display(),
        summary=flag_summary(flag),
        resolved_by=flag.resolved_by.display_name if flag.resolved_by else "",
        resolution_note=flag.resolution_note,
    )


def _concerns(flag: Flag, dosing: Session) -> bool:
    """Per-dosing flags count for their own dosing; the rest are about the patient."""
    if flag.kind in (Flag.Kind.WEAK_BOND, Flag.Kind.ALLIANCE_MISSING):
        return flag.dosing_session_id in (None, dosing.pk)
    return True


def dosing_readiness(dosings) -> dict[int, readiness.Readiness]:
    """{dosing session id: Readiness} for individual dosing sessions, in a fixed number of
    queries however many there are (the caseload asks for a page at a time)."""
    dosings = list(
        Session.objects.filter(pk__in=[d.pk for d in dosings], kind=SessionKind.DOSING)
        .exclude(enrolment=None)
        .select_related("enrolment", "program__protocol", "protocol_step__protocol")
        .prefetch_related("facilitators", "sign_offs__signed_by")
    )
    if not dosings:
        return {}
    now = timezone.now()
    patient_ids = {d.enrolment.patient_id for d in dosings}
    flags: dict[int, list[Flag]] = {}
    for flag in (
        Flag.objects.filter(patient_id__in=patient_ids)
        .filter(Q(status__in=Flag.UNRESOLVED) | Q(status=Flag.Status.RESOLVED, still_applies=True))
        .select_related("resolved_by")
        .order_by("raised_at", "id")
    ):
        flags.setdefault(flag.patient_id, []).append(flag)
    bonds = {
        row["response__patient_id"]: row
        for row in Score.objects.filter(
            response__patient_id__in=patient_ids,
            response__version__instrument__code="wai-sr",
            response__administered_at__lte=now,
            scale="bond",
            mean__isnull=False,
        )
        .order_by("response__patient_id", "-response__administered_at", "-response_id")
        .distinct("response__patient_id")
        .values("response__patient_id", "response_id", "response__administered_at", "mean")
    }
    rules_by_program = {r.program_id: r for r in FlagRule.objects.all()}
    default_rule = rules_by_program.get(None) or FlagRule()
    rule_of = {d.pk: rules_by_program.get(d.program_id, default_rule) for d in dosings}
    percentiles = clinic_bond_percentiles(r.percentile for r in rule_of.values())
    preparations: dict[int, list[dict]] = {}
    for row in (
        Attendance.objects.filter(
            patient_id__in=patient_ids,
            session__kind=SessionKind.PREPARATION,
            session__status=Session.Status.COMPLETED,
        )
        .order_by("session__scheduled_start")
        .values(
            "patient_id",
            "status",
            "session_id",
            "session__enrolment_id",
            "session__is_group",
            "session__program_id",
            "session__scheduled_start",
            "session__label",
            "session__protocol_step__instruments_due",
        )
    ):
        preparations.setdefault(row["patient_id"], []).append(row)

    counted: dict[int, list[dict]] = {}
    for dosing in dosings:
        counted[dosing.pk] = [
            row
            for row in preparations.get(dosing.enrolment.patient_id, [])
            if row["session__scheduled_start"] < dosing.scheduled_start
            and (
                row["session__enrolment_id"] == dosing.enrolment_id
                or (
                    row["session__is_group"]
                    and row["session__program_id"] == dosing.program_id
                    and row["status"] in _PRESENT
                )
            )
        ]
    last_ids = {rows[-1]["session_id"] for rows in counted.values() if rows}
    answered = set(
        Response.objects.filter(session_id__in=last_ids, patient_id__in=patient_ids).values_list(
            "patient_id", "session_id", "version__instrument__code"
        )
    )
    names = dict(Instrument.objects.values_list("code", "name"))

    result = {}
    for dosing in dosings:
        patient_id = dosing.enrolment.patient_id
        rule = rule_of[dosing.pk]
        value, ratings = percentiles[rule.percentile]
        bond = bonds.get(patient_id)
        done = counted[dosing.pk]
        last = done[-1] if done else None
        unanswered = (
            [
                names[code]
                for code in last["session__protocol_step__instruments_due"] or []
                if code in names and (patient_id, last["session_id"], code) not in answered
            ]
            if last
            else []
        )
        protocol = (
            dosing.protocol_step.protocol if dosing.protocol_step else dosing.program.protocol
        )
        sign_offs = list(dosing.sign_offs.all())
        latest = sign_offs[0] if sign_offs else None
        concerning = [f for f in flags.get(patient_id, []) if _concerns(f, dosing)]
        facts = readiness.DosingFacts(
            dosing_id=dosing.pk,
            starts_at=dosing.scheduled_start,
            open_flags=[_flag_fact(f) for f in concerning if f.is_unresolved],
            resolved_flags_still_applying=[
                _flag_fact(f) for f in concerning if not f.is_unresolved
            ],
            latest_bond=bond["mean"] if bond else None,
            latest_bond_response_id=bond["response_id"] if bond else None,
            latest_bond_at=(
                timezone.localtime(bond["response__administered_at"]) if bond else None
            ),
            bond_threshold=rule.weak_bond_below,
            clinic_percentile=rule.percentile,
            clinic_percentile_value=value if ratings >= rule.percentile_min_ratings else None,
            preparations_done=len(done),
            preparations_required=protocol.min_preparation_before_dosing if protocol else 0,
            unanswered_after_preparation=unanswered,
            last_preparation_id=last["session_id"] if last else None,
            last_preparation_label=(
                f"{last['session__label'] or 'the last preparation'} on "
                f"{timezone.localtime(last['session__scheduled_start']):%-d %b}"
                if last
                else ""
            ),
            facilitators=len(dosing.facilitators.all()),
            dose_recorded=bool(dosing.substance and dosing.dose_mg and dosing.route),
            logistics_due=dosing.scheduled_start
            <= now + datetime.timedelta(days=rule.weak_bond_days_before_dosing),
            sign_off=readiness.SignOff(
                by=latest.signed_by.display_name if latest.signed_by else "",
                at=latest.signed_at,
                note=latest.note,
                risk_keys=latest.risk_keys,
            )
            if latest
            else None,
        )
        result[dosing.pk] = readiness.assess(facts)
    return result


def readiness_of(dosing: Session) -> readiness.Readiness | None:
    return dosing_readiness([dosing]).get(dosing.pk)


# --- the flag worklist -----------------------------------------------------------------------

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
            severity_rank=_SEVERITY_RANK,
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
    return Flag.objects.filter(
        status__in=Flag.UNRESOLVED, patient__in=patients_visible_to(user)
    ).aggregate(
        open=Count("id"),
        safety=Count("id", filter=Q(kind__in=SAFETY_KINDS)),
    )
