"""What the flag rules read: one patient's measurements, the thresholds that apply, the
clinic's percentiles, and which patients a sweep or the outbox drain must recompute.

Read by the recompute (services, tasks); nothing here draws or pages."""

import datetime
import json
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db import connection
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from clinic.models import Enrolment, Patient
from outcomes.models import InstrumentVersion, Response
from sessions.models import AdverseEvent, Attendance, Session, SessionKind

from . import rules, trajectories
from .models import DEFAULTS, Flag, FlagRule, StalePatient


def flag_rule_for(*, patient: Patient) -> FlagRule | None:
    program_ids = patient.enrolments.filter(status=Enrolment.Status.ACTIVE).values("program")
    rule = FlagRule.objects.filter(program__in=program_ids).order_by("pk").first()
    return rule or FlagRule.objects.filter(program__isnull=True).first()


def rule_or_default(*, patient: Patient) -> FlagRule:
    """The active program's rule, else the clinic default, else an unsaved default row."""
    return flag_rule_for(patient=patient) or FlagRule()


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


def session_label(session: Session | None) -> str:
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


# Pages read the clinic's percentiles through this cache: scanning every bond rating costs
# hundreds of milliseconds at 10,000 patients, and one more rating among tens of thousands
# moves a percentile by nothing a reader would see. Saving responses drops it in this
# process at once (`services.responses_saved`); other processes see it within a minute.
# The flag engine keeps computing its own, fresh.
CLINIC_BONDS_CACHE_KEY = "alliance:clinic-bond-percentiles"
CLINIC_BONDS_CACHE_SECONDS = 60


def recent_clinic_bond_percentiles(percentiles) -> dict[int, tuple[float | None, int]]:
    """`clinic_bond_percentiles`, as computed at most a minute ago (for pages)."""
    wanted = set(percentiles)
    known = cache.get(CLINIC_BONDS_CACHE_KEY) or {}
    if not wanted <= known.keys():
        known = clinic_bond_percentiles(wanted | known.keys())
        cache.set(CLINIC_BONDS_CACHE_KEY, known, CLINIC_BONDS_CACHE_SECONDS)
    return {p: known[p] for p in wanted}


def forget_clinic_bond_percentiles() -> None:
    cache.delete(CLINIC_BONDS_CACHE_KEY)


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
    *,
    patient: Patient,
    now: datetime.datetime,
    clinic_bond: tuple[float | None, int],
    bond_bands=None,
) -> rules.Facts:
    """Everything the rules read for one patient; `clinic_bond` is the clinic's percentile
    of bond means at the patient's program's percentile, and the number of ratings;
    `bond_bands` the expected-band table as a sweep loaded it once (else read here)."""
    responses = list(
        Response.objects.filter(patient=patient, administered_at__lte=now)
        .select_related("version__instrument", "session__protocol_step")
        .prefetch_related("scores")
        .order_by("administered_at", "id")
    )
    alliance, srs, safety, gaps = [], [], [], []
    resolved = _resolved_safety_responses(patient)
    # A skipped safety item matters until the instrument is answered again.
    latest_of = {r.version.instrument.code: r.pk for r in responses}
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
                    session_label=session_label(response.session),
                    step_id=response.session.protocol_step_id if response.session else None,
                    step_order=response.session.protocol_step.order
                    if response.session and response.session.protocol_step
                    else None,
                )
            )
        elif code == "srs" and scores.get("total") and scores["total"].value is not None:
            srs.append(
                rules.SrsPoint(
                    response_id=response.pk,
                    at=response.administered_at,
                    total=scores["total"].value,
                    session_id=response.session_id,
                    session_label=session_label(response.session),
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
        if (
            response.safety_unanswered
            and latest_of[code] == response.pk
            and response.pk not in resolved[Flag.Kind.SAFETY_UNANSWERED]
        ):
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
    # The patient's own place counts: another attendee cancelling leaves this one's session.
    mine = Session.objects.filter(
        pk__in=Attendance.objects.filter(patient=patient)
        .exclude(status=Attendance.Status.CANCELLED)
        .values("session_id")
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
    serious_events = [
        _serious_event(e)
        for e in AdverseEvent.objects.filter(
            patient=patient, serious=True, resolved_on__isnull=True
        ).select_related("session")
    ]
    value, count = clinic_bond
    step_bands = trajectories.bond_bands_for_rules(
        step_ids=[p.step_id for p in alliance if p.step_id is not None],
        patient_id=patient.pk,
        loaded=bond_bands,
    )
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
        step_bands=step_bands,
        serious_events=serious_events,
    )


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


# --- The same facts for many patients at once (sweeps, imports, `recompute_flags`) ---------
#
# A handful of queries per chunk of patients, whatever its size, instead of a dozen per
# patient. `flag_facts` above stays the per-patient read (a coach's save); a test builds a
# varied clinic and checks that both give every patient the same flags.

_KIND_LABELS = dict(SessionKind.choices)


def id_array(ids) -> str:
    """Ids as one array literal, for a parameter cast `::bigint[]`: psycopg converts a list
    element by element in Python (half a millisecond per 1,000 ids, and a sweep chunk sends
    its ids to a dozen queries), a string at once."""
    return "{" + ",".join(str(int(pk)) for pk in ids) + "}"


def ids_in(ids) -> RawSQL:
    """`patient_id__in=ids_in(ids)`: a chunk's ids as one array parameter instead of one
    placeholder each (building and sending 250 placeholders per query, a dozen queries per
    chunk, cost more than some of the queries)."""
    return RawSQL("SELECT unnest(%s::bigint[])", [id_array(ids)])


def thresholds_for_patients(*, patient_ids) -> dict[int, rules.Thresholds]:
    """Each patient's thresholds, decided as `flag_rule_for` does (the active program's rule
    with the lowest id, else the clinic default, else DESIGN's defaults), in two queries."""
    by_program, default = {}, None
    for rule in FlagRule.objects.order_by("pk"):
        if rule.program_id is None:
            default = default or rule
        else:
            by_program[rule.program_id] = rule
    chosen: dict[int, FlagRule] = {}
    for patient_id, program_id in Enrolment.objects.filter(
        patient_id__in=ids_in(patient_ids), status=Enrolment.Status.ACTIVE
    ).values_list("patient_id", "program_id"):
        rule = by_program.get(program_id)
        if rule is not None and (patient_id not in chosen or rule.pk < chosen[patient_id].pk):
            chosen[patient_id] = rule
    fallback = default.thresholds() if default else rules.Thresholds()
    return {pk: chosen[pk].thresholds() if pk in chosen else fallback for pk in patient_ids}


# The chunk reads below are plain SQL on a cursor, read as tuples: at a sweep's scale, building
# each ORM query per chunk and a model instance per row cost as much as the queries themselves.
# `patient_id IN (SELECT unnest(%s::bigint[]))` sends a chunk's ids as one array parameter (and
# keeps the planner on each patient's rows: `= ANY(...)` led it to scan every session).

# The chunk reads' moments come as microseconds since the epoch, made datetimes by `moment`
# (exact, and the same aware UTC datetime as the ORM gives): Django has psycopg parse a
# timestamp's text in Python, about 4 µs each and 30,000 a sweep at 10,000 patients, where
# adding a timedelta takes a quarter of that.
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def moment(microseconds: int) -> datetime.datetime:
    return _EPOCH + datetime.timedelta(microseconds=microseconds)


# Instruments are joined by version id and named from `version_codes` (a few rows, read once
# per sweep): every joined table multiplies the planner's work, which cost more per chunk
# than running the query.
# The session and the two scores are looked up per response in subqueries fenced with
# OFFSET 0: as plain joins, a chunk of more than a few hundred patients (estimated at 26
# responses each, where a patient in care has about 3 that count) tipped the planner into
# hashing every bond and total score in the clinic, 15 times slower.
_RESPONSES = """
    SELECT r.id, r.patient_id, (extract(epoch FROM r.administered_at) * 1000000)::bigint,
           r.version_id, r.session_id, s.kind, s.label,
           s.protocol_step_id, s.step_order, sc.bond, sc.total_mean, sc.total_value,
           r.has_safety_hit, CASE WHEN r.has_safety_hit THEN r.safety_hits END,
           CASE WHEN r.safety_unanswered <> '[]'::jsonb THEN r.safety_unanswered END
    FROM outcomes_response r
    LEFT JOIN LATERAL (
        SELECT s.kind, s.label, s.protocol_step_id, step."order" AS step_order
        FROM clinic_sessions_session s
        LEFT JOIN clinic_sessions_protocolstep step ON step.id = s.protocol_step_id
        WHERE s.id = r.session_id
        OFFSET 0
    ) s ON true
    LEFT JOIN LATERAL (
        -- One row per scale at most (a unique constraint): the aggregates only pick it out.
        SELECT max(mean) FILTER (WHERE scale = 'bond') AS bond,
               max(mean) FILTER (WHERE scale = 'total') AS total_mean,
               max(value) FILTER (WHERE scale = 'total') AS total_value
        FROM outcomes_score
        WHERE response_id = r.id AND scale IN ('bond', 'total')
        OFFSET 0
    ) sc ON true
    WHERE r.patient_id IN (SELECT unnest(%(ids)s::bigint[])) AND r.administered_at <= %(now)s
      AND (r.version_id = ANY(ARRAY(
               SELECT v.id FROM outcomes_instrumentversion v
               JOIN outcomes_instrument i ON i.id = v.instrument_id
               WHERE i.code IN ('wai-sr', 'srs')))
           OR r.has_safety_hit OR r.safety_unanswered <> '[]'::jsonb)
    ORDER BY r.patient_id, r.administered_at, r.id
"""


def version_codes(version_ids, known: dict[int, str]) -> dict[int, str]:
    """{instrument version id: instrument code}, `known` completed in one query where it
    lacks some (a version never changes instrument, so a sweep keeps what it read)."""
    missing = set(version_ids) - known.keys()
    if missing:
        known.update(
            InstrumentVersion.objects.filter(pk__in=missing).values_list("pk", "instrument__code")
        )
    return known


def _json(value):
    """A jsonb column read on a plain cursor comes as text (Django leaves the parsing to the
    field); the ORM's reads give it parsed."""
    return json.loads(value) if isinstance(value, str) else value


def _response_facts(patient_ids, now, covered, codes) -> tuple[dict, dict, dict, dict]:
    """WAI-SR and SRS ratings, safety answers and skipped safety items per patient, oldest
    first: one query for the responses with their session, step, bond and total scores (and
    one more where an item was skipped, for the latest response to each instrument).
    `covered` ({(patient id, kind): response ids}) is what a person has resolved; `codes`
    the sweep's `version_codes`."""
    alliance: dict[int, list[rules.AlliancePoint]] = {}
    srs: dict[int, list[rules.SrsPoint]] = {}
    hits: dict[int, list[rules.SafetyHit]] = {}
    gaps: dict[int, list[rules.SafetyGap]] = {}
    with connection.cursor() as cursor:
        cursor.execute(_RESPONSES, {"ids": id_array(patient_ids), "now": now})
        rows = cursor.fetchall()
    codes = version_codes({row[3] for row in rows}, codes)
    with_gaps = {row[1] for row in rows if row[14]}
    # A skipped item counts only on the latest response to its instrument.
    latest = (
        set(
            Response.objects.filter(patient_id__in=with_gaps, administered_at__lte=now)
            .order_by("patient_id", "version__instrument__code", "-administered_at", "-id")
            .distinct("patient_id", "version__instrument__code")
            .values_list("pk", flat=True)
        )
        if with_gaps
        else set()
    )
    for (
        pk,
        patient_id,
        at,
        version_id,
        session_id,
        kind,
        label,
        step_id,
        order,
        bond,
        total_mean,
        total_value,
        has_hit,
        safety_hits,
        unanswered,
    ) in rows:
        at = moment(at)
        code = codes[version_id]
        if code == "wai-sr" or code == "srs":
            label = (label or _KIND_LABELS.get(kind, kind)) if session_id else ""
            if code == "wai-sr":
                alliance.setdefault(patient_id, []).append(
                    rules.AlliancePoint(
                        response_id=pk,
                        at=at,
                        bond=bond,
                        total=total_mean,
                        session_id=session_id,
                        session_kind=kind or "",
                        session_label=label,
                        step_id=step_id,
                        step_order=order if step_id else None,
                    )
                )
            elif total_value is not None:
                srs.setdefault(patient_id, []).append(
                    rules.SrsPoint(
                        response_id=pk,
                        at=at,
                        total=total_value,
                        session_id=session_id,
                        session_label=label,
                    )
                )
        if has_hit and pk not in covered.get((patient_id, Flag.Kind.SAFETY), ()):
            hits.setdefault(patient_id, []).extend(
                rules.SafetyHit(
                    response_id=pk,
                    at=at,
                    instrument=code,
                    item=hit["item"],
                    value=hit["value"],
                    urgent=hit["urgent"],
                )
                for hit in _json(safety_hits)
            )
        if (
            unanswered
            and pk in latest
            and pk not in covered.get((patient_id, Flag.Kind.SAFETY_UNANSWERED), ())
        ):
            gaps.setdefault(patient_id, []).extend(
                rules.SafetyGap(
                    response_id=pk,
                    at=at,
                    instrument=code,
                    item=item,
                    total_given=total_value is not None,
                )
                for item in _json(unanswered)
            )
    return alliance, srs, hits, gaps


def resolved_safety_responses(resolved_flags) -> dict[tuple[int, str], set[int]]:
    """{(patient id, kind): response ids} a person has dealt with, from resolved flags."""
    covered: dict[tuple[int, str], set[int]] = {}
    for flag in resolved_flags:
        if flag.kind in (Flag.Kind.SAFETY, Flag.Kind.SAFETY_UNANSWERED):
            covered.setdefault((flag.patient_id, flag.kind), set()).update(
                rules.basis(flag.kind, flag.evidence)
            )
    return covered


# The session is looked up per attendance (fenced with OFFSET 0, as in `_RESPONSES`): joined,
# a chunk of a thousand patients led the planner to read every scheduled dosing and completed
# preparation in the clinic. Completed dosings come along for `ChunkSchedule.dosing_spans`.
_SCHEDULE = """
    SELECT a.patient_id, a.session_id, a.status, s.kind, s.status,
           (extract(epoch FROM s.scheduled_start) * 1000000)::bigint
    FROM clinic_sessions_attendance a
    JOIN LATERAL (
        SELECT kind, status, scheduled_start FROM clinic_sessions_session
        WHERE id = a.session_id
        OFFSET 0
    ) s ON true
    WHERE a.patient_id IN (SELECT unnest(%(ids)s::bigint[]))
      AND ((s.kind = %(dosing)s AND s.status = %(scheduled)s)
           OR (s.kind = %(dosing)s AND s.status = %(completed)s
               AND a.status <> ALL(%(not_coming)s))
           OR (s.kind = %(preparation)s AND s.status = %(completed)s
               AND a.status <> %(cancelled)s))
    ORDER BY a.patient_id, s.scheduled_start, a.session_id
"""


@dataclass
class ChunkSchedule:
    """What a sweep chunk's schedule read gives its other writes, so they need not read it
    again: per patient, the start of every scheduled dosing, their place cancelled or not
    (the caseload orders by the next one), and the first and last completed dosing they
    attended (what `CohortMeasures` are taken around, as `cohort_selectors` chooses them)."""

    dosing_starts: dict[int, list[datetime.datetime]] = field(default_factory=dict)
    dosing_spans: dict[int, tuple[datetime.datetime, datetime.datetime]] = field(
        default_factory=dict
    )


def _schedule_facts(patient_ids, schedule: ChunkSchedule) -> tuple[dict, dict]:
    """Scheduled dosings and completed preparations per patient, by the patient's own
    attendance (one query); `schedule` is filled as `ChunkSchedule` says."""
    dosings: dict[int, list[rules.Dosing]] = {}
    preparations: dict[int, list[datetime.datetime]] = {}
    cancelled = Attendance.Status.CANCELLED
    with connection.cursor() as cursor:
        cursor.execute(
            _SCHEDULE,
            {
                "ids": id_array(patient_ids),
                "cancelled": cancelled.value,
                "not_coming": [status.value for status in Attendance.NOT_COMING],
                "dosing": SessionKind.DOSING.value,
                "scheduled": Session.Status.SCHEDULED.value,
                "preparation": SessionKind.PREPARATION.value,
                "completed": Session.Status.COMPLETED.value,
            },
        )
        rows = cursor.fetchall()
    spans = schedule.dosing_spans
    for patient_id, session_id, status, kind, session_status, start in rows:
        start = moment(start)
        if kind != SessionKind.DOSING:
            preparations.setdefault(patient_id, []).append(start)
        elif session_status == Session.Status.COMPLETED:
            first, last = spans.get(patient_id, (start, start))
            spans[patient_id] = (min(first, start), max(last, start))
        else:
            schedule.dosing_starts.setdefault(patient_id, []).append(start)
            if status != cancelled:
                dosings.setdefault(patient_id, []).append(
                    rules.Dosing(session_id=session_id, start=start)
                )
    return dosings, preparations


def _serious_events(patient_ids) -> dict[int, list[rules.SeriousEvent]]:
    events: dict[int, list[rules.SeriousEvent]] = {}
    for e in AdverseEvent.objects.filter(
        patient_id__in=ids_in(patient_ids), serious=True, resolved_on__isnull=True
    ).select_related("session"):
        events.setdefault(e.patient_id, []).append(_serious_event(e))
    return events


def facts_for_patients(
    *,
    patient_ids,
    now: datetime.datetime,
    thresholds: dict[int, rules.Thresholds],
    clinic_bonds: dict[int, tuple[float | None, int]],
    bond_bands,
    resolved_flags,
    instrument_codes: dict[int, str],
    schedule: ChunkSchedule,
) -> dict[int, rules.Facts]:
    """`flag_facts` for every patient in `patient_ids` in three queries: the clinic's
    percentiles (`clinic_bond_percentiles`) and the band table (`load_bond_bands`) are read
    once by the caller for a whole sweep, and `resolved_flags` (the patients' flags a person
    resolved) by the caller, who locks them anyway. `instrument_codes`: the sweep's
    `version_codes`. `schedule` is filled as `ChunkSchedule` says."""
    patient_ids = list(patient_ids)
    alliance, srs, hits, gaps = _response_facts(
        patient_ids, now, resolved_safety_responses(resolved_flags), instrument_codes
    )
    dosings, preparations = _schedule_facts(patient_ids, schedule)
    events = _serious_events(patient_ids)
    found = {}
    for pk in patient_ids:
        points = alliance.get(pk, [])
        value, count = clinic_bonds[thresholds[pk].percentile]
        found[pk] = rules.Facts(
            now=now,
            alliance=points,
            srs=srs.get(pk, []),
            safety=hits.get(pk, []),
            safety_unanswered=gaps.get(pk, []),
            dosings=dosings.get(pk, []),
            preparations=preparations.get(pk, []),
            clinic_bond_percentile=value,
            clinic_bond_ratings=count,
            step_bands=trajectories.bond_bands_for_rules(
                step_ids=[p.step_id for p in points if p.step_id is not None],
                patient_id=pk,
                loaded=bond_bands,
            ),
            serious_events=events.get(pk, []),
        )
    return found


def _serious_event(e: AdverseEvent) -> rules.SeriousEvent:
    """An open serious adverse event as the rules read it (the session must be selected)."""
    return rules.SeriousEvent(
        event_id=e.pk,
        public_id=str(e.public_id),
        onset_at=e.onset_at,
        grade=e.grade,
        description=e.description[:200],
        criteria=tuple(e.serious_criteria),
        dosing_session_id=e.session_id if e.session and e.session.is_dosing else None,
    )
