"""Writes about flags: recompute from the database, acknowledge, resolve, notify.

`recompute_patient` is the only writer of automatic flag changes. It reads every fact from
the database, so running it twice, or out of order, leaves the same rows.
"""

import contextlib
import contextvars
import datetime
import gc
import json
import logging
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import DatabaseError, connection, transaction
from django.db.models import Min
from django.template.loader import render_to_string
from django.utils import timezone

from clinic.audit import audit_record, audit_records
from clinic.models import AuditEvent, Patient, Program
from clinic.roles import Role
from outcomes.models import Response
from sessions.models import Attendance, Session, SessionKind

from . import caseload, cohort_selectors, flag_inputs, rules, selectors, trajectories
from .models import (
    AdverseEventTally,
    CohortMeasures,
    DosingSignOff,
    Flag,
    FlagRule,
    StalePatient,
)
from .queue import enqueue_recompute

log = logging.getLogger(__name__)


def thresholds_for(*, patient: Patient) -> rules.Thresholds:
    """The active program's rule, else the clinic default, else DESIGN's defaults."""
    rule = flag_inputs.flag_rule_for(patient=patient)
    return rule.thresholds() if rule else rules.Thresholds()


@transaction.atomic
def recompute_patient(
    *, patient_id: int, now=None, clinic_bonds=None, kinds=None, bond_bands=None
) -> dict:
    """Bring one patient's flags in line with the rules.

    `clinic_bonds` ({percentile: (value, ratings)}) lets a sweep compute the clinic's
    percentiles once for every patient; without it they are read for this patient's rule.
    `kinds` limits the recompute to some rules (the safety rules, run inside the transaction
    that saved the answers); a full recompute also clears the patient from the outbox.
    `bond_bands` (`trajectories.load_bond_bands`) likewise lets a sweep read the expected
    bands once.
    """
    started = timezone.now()
    now = now or started
    # One recompute per patient at a time; a second waits and then sees the first's rows.
    patient = Patient.objects.select_for_update().get(pk=patient_id)
    thresholds = thresholds_for(patient=patient)
    if kinds is not None and rules.Kind.WEAK_BOND not in kinds:
        clinic_bond = (None, 0)
    else:
        if clinic_bonds is None or thresholds.percentile not in clinic_bonds:
            clinic_bonds = flag_inputs.clinic_bond_percentiles([thresholds.percentile])
        clinic_bond = clinic_bonds[thresholds.percentile]
    patient_facts = flag_inputs.flag_facts(
        patient=patient, now=now, clinic_bond=clinic_bond, bond_bands=bond_bands
    )
    decisions = {
        d.key: d
        for d in rules.evaluate(patient_facts, thresholds)
        if kinds is None or d.kind in kinds
    }
    mine = Flag.objects.filter(patient=patient)
    if kinds is not None:
        mine = mine.filter(kind__in=[k.value for k in kinds])
    unresolved = list(
        mine.select_for_update(of=("self",))
        .select_related("dosing_session")
        .filter(status__in=Flag.UNRESOLVED)
        .order_by("raised_at", "id")
    )
    resolved_by_people = list(mine.select_for_update().filter(status=Flag.Status.RESOLVED))
    changes = _flag_changes(
        patient_id=patient.pk,
        decisions=decisions,
        unresolved=unresolved,
        resolved_by_people=resolved_by_people,
        now=now,
    )
    created, updated, cleared = changes.created, changes.updated, changes.cleared
    # Cleared first, created last: a flag moving on to the next dosing, or a new one, must not
    # meet an open flag the same change closes (one open flag per patient, kind and dosing).
    for flag in cleared:
        flag.save(update_fields=["status", "resolved_at", "resolution_note", "updated_at"])
    for flag in updated:
        flag.save(update_fields=["evidence", "severity", "dosing_session", "updated_at"])
    for flag in created:
        flag.save()
    for flag in changes.still_applies:
        flag.save(update_fields=["still_applies", "updated_at"])

    for flag in created:
        _audit_automatic(flag, patient, "raised")
    for flag in cleared:
        _audit_automatic(flag, patient, "cleared", note=flag.resolution_note)
    if kinds is None:
        # Changes committed after this recompute began may not be in what it read: they stay.
        StalePatient.objects.filter(patient=patient, since__lte=started).delete()
        cohort_measures_refresh(patient_ids=[patient.pk])
    if created:
        ids = [f.pk for f in created]
        transaction.on_commit(lambda: enqueue_notifications(flag_ids=ids), robust=True)
    caseload_order_refresh(patient_ids=[patient.pk], now=now)
    return {"created": created, "updated": updated, "cleared": cleared}


def caseload_order_refresh(*, patient_ids=None, now=None) -> int:
    """Store the caseload's sort keys on each patient (all patients in care when
    `patient_ids` is None): the rank of the most severe unresolved flag and the next
    scheduled dosing. One UPDATE however many patients; the per-patient recompute calls it
    for its patient (a sweep's chunk computes the same keys from what it read, in
    `_store_caseload_keys`). Only rows whose keys changed are written, so a sweep that
    changes nothing writes nothing. Returns the number of patients updated."""
    now = now or timezone.now()
    # Per-chunk aggregates joined once, not a correlated ORDER BY ... LIMIT 1 per patient:
    # that plan walked every scheduled dosing in the clinic in start order for each patient
    # (minutes at 10,000 patients, worst without table statistics, as after a bulk load).
    if patient_ids is None:
        chosen = Patient.objects.filter(status__in=Patient.ACTIVE_STATUSES).order_by().values("pk")
        among = chosen
        chosen_sql = chosen.query.sql_with_params()
    else:
        # A list of ids, where there is one, lets the planner start from each patient's rows
        # (ids with no patient row update nothing; selecting them from the patient table first
        # cost a scan of every patient per chunk).
        among = flag_inputs.ids_in(patient_ids)
        chosen_sql = ("SELECT unnest(%s::bigint[])", (list(patient_ids),))
    ranks = (
        Flag.objects.filter(patient__in=among, status__in=Flag.UNRESOLVED)
        .order_by()
        .values("patient_id")
        .annotate(rank=Min(selectors.SEVERITY_ORDER))
        .values_list("patient_id", "rank")
    )
    dosings = (
        Attendance.objects.filter(
            patient__in=among,
            session__kind=SessionKind.DOSING,
            session__status=Session.Status.SCHEDULED,
            session__scheduled_start__gte=now,
        )
        .order_by()
        .values("patient_id")
        .annotate(start=Min("session__scheduled_start"))
        .values_list("patient_id", "start")
    )
    parts = [chosen_sql, *(q.query.sql_with_params() for q in (ranks, dosings))]
    table = connection.ops.quote_name(Patient._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table} AS p
            SET caseload_flag_rank = r.rank, caseload_next_dosing_at = d.start
            FROM ({parts[0][0]}) AS c (id)
            LEFT JOIN ({parts[1][0]}) AS r (patient_id, rank) ON r.patient_id = c.id
            LEFT JOIN ({parts[2][0]}) AS d (patient_id, start) ON d.patient_id = c.id
            WHERE p.id = c.id
              AND (p.caseload_flag_rank IS DISTINCT FROM r.rank
                   OR p.caseload_next_dosing_at IS DISTINCT FROM d.start)
            """,
            [*parts[0][1], *parts[1][1], *parts[2][1]],
        )
        return cursor.rowcount


@transaction.atomic
def cohort_measures_refresh(*, patient_ids=None, spans=None) -> int:
    """Bring these patients' `CohortMeasures` rows (None: every patient's) in line with
    their ratings and dosings, in a few queries whatever their number; a patient with no
    completed dosing has no row. The flag recompute calls it for the patients it covers, so
    the rows are as fresh as the flags; a patient marked stale after their row was computed
    is computed live by the analytics page until then. `spans`: as
    `cohort_selectors.patient_measures` takes them. Returns the number of patients with a
    row."""
    # Before reading: a change marked stale after this moment is one the read may not see.
    computed_at = timezone.now()
    measured = cohort_selectors.patient_measures(patient_ids=patient_ids, spans=spans)
    # Only rows that differ are written, and rows of patients no longer dosed deleted, in one
    # statement: a sweep rewrote every dosed patient's row each time, nearly always the same.
    # A row left as it was keeps its older `computed_at`, which can only make the page
    # compute that patient live a little more often, never read a row that is out of date.
    table = connection.ops.quote_name(CohortMeasures._meta.db_table)
    # These patients' rows found by key: joined to the list, the planner scanned the table.
    among = "" if patient_ids is None else "AND m.patient_id = ANY(%(among)s::bigint[])"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH fresh AS (
                SELECT * FROM unnest(%(ids)s::bigint[], %(first)s::timestamptz[],
                                     %(last)s::timestamptz[], %(measures)s::jsonb[])
                     AS f (patient_id, first_dosing, last_dosing, measures)
            ), gone AS (
                DELETE FROM {table} m
                WHERE m.patient_id NOT IN (SELECT patient_id FROM fresh) {among}
            )
            -- Compared before inserting: an insert that meets its row costs several times
            -- a read of it. ON CONFLICT is for a row another transaction adds meanwhile.
            INSERT INTO {table} AS m (patient_id, first_dosing, last_dosing, measures, computed_at)
            SELECT f.patient_id, f.first_dosing, f.last_dosing, f.measures, %(computed_at)s
            FROM fresh f
            LEFT JOIN {table} kept ON kept.patient_id = f.patient_id
            WHERE (kept.first_dosing, kept.last_dosing, kept.measures)
                  IS DISTINCT FROM (f.first_dosing, f.last_dosing, f.measures)
            ON CONFLICT (patient_id) DO UPDATE
               SET first_dosing = EXCLUDED.first_dosing, last_dosing = EXCLUDED.last_dosing,
                   measures = EXCLUDED.measures, computed_at = EXCLUDED.computed_at
             WHERE (m.first_dosing, m.last_dosing, m.measures)
                   IS DISTINCT FROM (EXCLUDED.first_dosing, EXCLUDED.last_dosing, EXCLUDED.measures)
            """,
            {
                "among": flag_inputs.id_array(patient_ids or ()),
                "ids": flag_inputs.id_array(measured),
                "first": [m.first_dosing for m in measured.values()],
                "last": [m.last_dosing for m in measured.values()],
                "measures": [json.dumps(m.measures) for m in measured.values()],
                "computed_at": computed_at,
            },
        )
    return len(measured)


@dataclass
class FlagChanges:
    """What one patient's recompute changes: flags to create (unsaved), and existing rows
    with their new values set, not yet saved."""

    created: list[Flag] = field(default_factory=list)
    updated: list[Flag] = field(default_factory=list)
    cleared: list[Flag] = field(default_factory=list)
    still_applies: list[Flag] = field(default_factory=list)


def _flag_changes(
    *, patient_id: int, decisions: dict, unresolved: list[Flag], resolved_by_people, now
) -> FlagChanges:
    """Compare the rules' decisions with the patient's flags. Shared by the per-patient
    recompute and the sweep, so both write the same rows; only how they save differs."""
    unresolved_by_key: dict[tuple, Flag] = {}
    changes = FlagChanges()
    # `unresolved` comes oldest first: flags once raised per dosing for a kind now raised per
    # patient (rules.PER_PATIENT) merge into the oldest.
    for flag in unresolved:
        key = rules.flag_key(flag.kind, flag.dosing_session_id)
        if key in unresolved_by_key:
            flag.status = Flag.Status.AUTO_RESOLVED
            flag.resolved_at = now
            flag.resolution_note = "Merged into one flag for the patient's coming dosings."
            changes.cleared.append(flag)
        else:
            unresolved_by_key[key] = flag
    still_applying: set[int] = set()
    for key, decision in decisions.items():
        flag = unresolved_by_key.get(key)
        if flag is not None:
            # A per-patient flag moves on to the next dosing when its nearest one has passed.
            if (
                flag.evidence != decision.evidence
                or flag.severity != decision.severity
                or flag.dosing_session_id != decision.dosing_session_id
            ):
                flag.evidence = decision.evidence
                flag.severity = decision.severity
                flag.dosing_session_id = decision.dosing_session_id
                changes.updated.append(flag)
            continue
        same = _resolved_with_same_basis(resolved_by_people, decision)
        if same is not None:
            # A person dealt with this very condition: no new flag, but it still holds.
            still_applying.add(same.pk)
            continue
        changes.created.append(
            Flag(
                patient_id=patient_id,
                kind=decision.kind.value,
                severity=decision.severity.value,
                dosing_session_id=decision.dosing_session_id,
                evidence=decision.evidence,
                raised_at=now,
            )
        )
    for key, flag in unresolved_by_key.items():
        if key not in decisions and rules.Kind(flag.kind) in rules.AUTO_RESOLVING:
            flag.status = Flag.Status.AUTO_RESOLVED
            flag.resolved_at = now
            flag.resolution_note = _why_cleared(flag)
            changes.cleared.append(flag)
    for flag in resolved_by_people:
        holds = flag.pk in still_applying
        if flag.still_applies != holds:
            flag.still_applies = holds
            changes.still_applies.append(flag)
    return changes


# A coach's save (a handful of patients at most) is recomputed at once, one task each on the
# interactive queue; more at once (an import, a threshold change over a program) make one
# bulk task, so they never stand in front of a coach's save.
PUBLISH_AT_ONCE = 20
SAFETY_KINDS = frozenset({rules.Kind.SAFETY, rules.Kind.SAFETY_UNANSWERED})
ADVERSE_EVENT_KINDS = frozenset({rules.Kind.ADVERSE_EVENT})


_publishing = contextvars.ContextVar("publish_recomputes", default=True)


@contextlib.contextmanager
def recomputes_held():
    """Inside, stale marks are recorded but no worker is asked: for bulk writers (the demo's
    seeding) that recompute in one pass at the end. Marks left over go to the drain."""
    token = _publishing.set(False)
    try:
        yield
    finally:
        _publishing.reset(token)


def mark_stale(*, patient_ids, bulk: bool = False) -> None:
    """Record, in the caller's transaction, that these patients' flags need a recompute, and
    once committed ask a worker to do it now: per patient for a coach's save, in one bulk
    task for a bulk writer (`bulk`, or more than PUBLISH_AT_ONCE patients). If the broker is
    down the drain does it."""
    ids = sorted(set(patient_ids))
    if not ids:
        return
    since = timezone.now()
    # An older mark stays: it already asks for everything after it.
    StalePatient.objects.bulk_create(
        [StalePatient(patient_id=pk, since=since) for pk in ids], ignore_conflicts=True
    )
    if _publishing.get():
        bulk = bulk or len(ids) > PUBLISH_AT_ONCE
        transaction.on_commit(lambda: enqueue_recompute(patient_ids=ids, bulk=bulk), robust=True)


def responses_saved(*, responses) -> None:
    """Inside the transaction that saved them: safety answers become flags at once (no broker
    needed), and everything else is recorded for the worker."""
    # Now for this transaction's own reads, and again once committed, so that no request
    # in between keeps the percentiles from before these answers.
    flag_inputs.forget_clinic_bond_percentiles()
    transaction.on_commit(flag_inputs.forget_clinic_bond_percentiles)
    for patient_id in sorted(
        {r.patient_id for r in responses if r.has_safety_hit or r.safety_unanswered}
    ):
        recompute_patient(patient_id=patient_id, kinds=SAFETY_KINDS)
    mark_stale(
        patient_ids=[r.patient_id for r in responses],
        bulk=any(r.source == Response.Source.IMPORT for r in responses),
    )


def adverse_event_saved(*, patient_ids) -> None:
    """Inside the transaction that saved an adverse event: a serious one is flagged (and,
    once committed, notified exactly once) at once, broker or no broker; closing it clears
    the flag."""
    for patient_id in sorted(set(patient_ids)):
        recompute_patient(patient_id=patient_id, kinds=ADVERSE_EVENT_KINDS)


def _automatic_entry(flag: Flag, patient: Patient, change: str, note: str = "") -> dict:
    """The flag engine's own changes, by the system (no actor)."""
    return {
        "actor": None,
        "action": AuditEvent.Action.CREATE if change == "raised" else AuditEvent.Action.UPDATE,
        "target": flag,
        "patient": patient,
        "detail": {"flag": change, "kind": flag.kind, **({"note": note} if note else {})},
    }


def _audit_automatic(flag: Flag, patient: Patient, change: str, note: str = "") -> None:
    audit_record(**_automatic_entry(flag, patient, change, note))


def _why_cleared(flag: Flag) -> str:
    if flag.kind == Flag.Kind.ADVERSE_EVENT:
        return "The adverse event was closed (a resolution date was recorded)."
    dosing = flag.dosing_session
    if dosing is not None and dosing.status == Session.Status.CANCELLED:
        return f"The dosing was cancelled: {dosing.status_reason or 'no reason given'}."
    if dosing is not None and dosing.status != Session.Status.SCHEDULED:
        return f"The dosing is {dosing.get_status_display().lower()}."
    if flag.kind == Flag.Kind.SAFETY_UNANSWERED:
        return "The safety item was answered in a later questionnaire."
    return "The condition no longer holds."


# Patients per transaction in a sweep: small enough that a chunk takes well under a second
# or two (a coach's recompute of one of them waits at most that long for its row lock), large
# enough that the fixed cost of its few queries is shared. A chunk of 1,000 takes about
# 0.2 s at 10,000 patients; chunks of 250 spent a third of a sweep on per-query overhead.
SWEEP_CHUNK = 1000


@dataclass
class SweepResult:
    """What a many-patient recompute did. `failed` and `left` (not reached before the
    deadline, or when the sweep was interrupted) are back in the outbox for the drain."""

    totals: dict[str, int] = field(
        default_factory=lambda: {"created": 0, "updated": 0, "cleared": 0}
    )
    done: int = 0
    failed: list[int] = field(default_factory=list)
    left: list[int] = field(default_factory=list)


def recompute_patients(
    *, patient_ids, now=None, deadline: float | None = None, chunk_size: int = SWEEP_CHUNK
) -> SweepResult:
    """Recompute many patients set-based: per chunk, one transaction that reads every fact
    in a few queries, evaluates the same rules as `recompute_patient`, and writes the changes
    and their audit rows in bulk. The clinic's percentiles and the band table are read once.

    `deadline` (a `time.monotonic()` value) stops before a chunk that would start after it;
    whatever was not reached, or was interrupted (a task's soft time limit), goes back to the
    outbox, so a sweep cut short makes flags late, never missing. A chunk that fails is
    retried one patient at a time so one bad record cannot hold back the others."""
    ids = sorted(set(patient_ids))
    clinic_bonds = flag_inputs.clinic_bond_percentiles(flag_inputs.rule_percentiles())
    bond_bands = trajectories.load_bond_bands()
    codes: dict[int, str] = {}  # flag_inputs.version_codes, filled as the chunks meet them
    result = SweepResult()
    reached = 0
    try:
        for begin in range(0, len(ids), chunk_size):
            if begin and deadline is not None and time.monotonic() >= deadline:
                break
            chunk = ids[begin : begin + chunk_size]
            try:
                with _no_cycle_collection():
                    counts = _recompute_chunk(
                        chunk,
                        now=now,
                        clinic_bonds=clinic_bonds,
                        bond_bands=bond_bands,
                        codes=codes,
                    )
            except DatabaseError:
                log.exception("A sweep chunk failed; recomputing its patients one by one.")
                counts = _recompute_one_by_one(
                    chunk, now=now, clinic_bonds=clinic_bonds, bond_bands=bond_bands, into=result
                )
            for key, count in counts.items():
                result.totals[key] += count
            reached = begin + len(chunk)
            result.done = reached - len(result.failed)
    finally:
        result.left = ids[reached:]
        _back_to_outbox([*result.failed, *result.left])
    return result


@contextlib.contextmanager
def _no_cycle_collection():
    """A chunk builds tens of thousands of short-lived rows and facts that reference counting
    frees; the cycle collector, triggered by the allocations alone, kept re-scanning them and
    everything older, 100-250 ms of a 10k sweep. Pausing it for one bounded chunk costs at
    most that chunk's few cycles, collected as soon as it runs again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _back_to_outbox(patient_ids) -> None:
    if patient_ids:
        since = timezone.now()
        StalePatient.objects.bulk_create(
            [StalePatient(patient_id=pk, since=since) for pk in patient_ids],
            ignore_conflicts=True,
        )


def _recompute_one_by_one(chunk, *, now, clinic_bonds, bond_bands, into: SweepResult) -> dict:
    counts = {"created": 0, "updated": 0, "cleared": 0}
    for patient_id in chunk:
        try:
            changed = recompute_patient(
                patient_id=patient_id, now=now, clinic_bonds=clinic_bonds, bond_bands=bond_bands
            )
        except DatabaseError:
            into.failed.append(patient_id)
            log.exception("Recompute failed for patient id %s; it waits in the outbox.", patient_id)
            continue
        for key, flags in changed.items():
            counts[key] += len(flags)
    return counts


_FLAG_COLUMNS = [f.name for f in Flag._meta.concrete_fields]


@transaction.atomic
def _recompute_chunk(patient_ids, *, now, clinic_bonds, bond_bands, codes) -> dict[str, int]:
    started = timezone.now()
    now = now or started
    # The same row locks as `recompute_patient`, taken in id order so two sweeps never
    # deadlock; a coach's recompute of one of these patients waits for this chunk.
    # The caseload's stored sort keys come along: under the lock they stay what is read, so
    # the chunk writes only the keys that change (`_store_caseload_keys`).
    table = connection.ops.quote_name(Patient._meta.db_table)
    with connection.cursor() as cursor:
        # The chunk's reads look rows up per patient, which the planner prices above its JIT
        # threshold at a thousand patients: compiling cost 30 ms a query, running it 5 ms.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(
            f"""
            SELECT id, caseload_flag_rank,
                   (extract(epoch FROM caseload_next_dosing_at) * 1000000)::bigint
            FROM {table} WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE
            """,
            [flag_inputs.id_array(patient_ids)],
        )
        stored_keys = {
            pk: (rank, None if start is None else flag_inputs.moment(start))
            for pk, rank, start in cursor.fetchall()
        }
    patients = list(stored_keys)
    thresholds = flag_inputs.thresholds_for_patients(patient_ids=patients)
    wanted = {t.percentile for t in thresholds.values()} - set(clinic_bonds)
    if wanted:  # a rule changed since the sweep began
        clinic_bonds = {**clinic_bonds, **flag_inputs.clinic_bond_percentiles(wanted)}
    unresolved: dict[int, list[Flag]] = {}
    resolved: dict[int, list[Flag]] = {}
    resolved_flags = []
    schedule = flag_inputs.ChunkSchedule()
    for flag in (
        Flag.objects.select_for_update(of=("self",))
        .select_related("dosing_session")
        # Of the dosing, only what `_why_cleared` says: building all 24 columns of a session
        # for every flag cost more than reading the flags.
        .only(*_FLAG_COLUMNS, "dosing_session__status", "dosing_session__status_reason")
        .filter(
            patient_id__in=flag_inputs.ids_in(patients),
            status__in=[*Flag.UNRESOLVED, Flag.Status.RESOLVED],
        )
        .order_by("raised_at", "id")
    ):
        if flag.status in Flag.UNRESOLVED:
            unresolved.setdefault(flag.patient_id, []).append(flag)
        else:
            resolved.setdefault(flag.patient_id, []).append(flag)
            resolved_flags.append(flag)
    facts = flag_inputs.facts_for_patients(
        patient_ids=patients,
        now=now,
        thresholds=thresholds,
        clinic_bonds=clinic_bonds,
        bond_bands=bond_bands,
        resolved_flags=resolved_flags,
        instrument_codes=codes,
        schedule=schedule,
    )
    every = FlagChanges()
    for patient_id in patients:
        changes = _flag_changes(
            patient_id=patient_id,
            decisions={d.key: d for d in rules.evaluate(facts[patient_id], thresholds[patient_id])},
            unresolved=unresolved.get(patient_id, []),
            resolved_by_people=resolved.get(patient_id, []),
            now=now,
        )
        for name in ("created", "updated", "cleared", "still_applies"):
            getattr(every, name).extend(getattr(changes, name))
    saved_at = timezone.now()
    # In the per-patient order: cleared, moved, then created (see recompute_patient).
    for flags, fields in (
        (every.cleared, ["status", "resolved_at", "resolution_note"]),
        (every.updated, ["evidence", "severity", "dosing_session"]),
        (every.still_applies, ["still_applies"]),
    ):
        for flag in flags:
            flag.updated_at = saved_at
        Flag.objects.bulk_update(flags, [*fields, "updated_at"], batch_size=500)
    Flag.objects.bulk_create(every.created, batch_size=1000)
    # The audit row names the patient by id only.
    audit_records(
        [_automatic_entry(f, Patient(pk=f.patient_id), "raised") for f in every.created]
        + [
            _automatic_entry(f, Patient(pk=f.patient_id), "cleared", note=f.resolution_note)
            for f in every.cleared
        ]
    )
    StalePatient.objects.filter(
        patient_id__in=flag_inputs.ids_in(patients), since__lte=started
    ).delete()
    # The caseload's sort keys from what this chunk read and wrote under its locks, as
    # `caseload_order_refresh` computes them (a schedule change refreshes them itself, and
    # waits for this chunk's lock on the patient row to do so).
    ranks = {}
    for flag in [*(f for flags in unresolved.values() for f in flags), *every.created]:
        rank = Flag.SEVERITY_RANK.get(flag.severity)
        if flag.status in Flag.UNRESOLVED and rank is not None:
            ranks[flag.patient_id] = min(rank, ranks.get(flag.patient_id, rank))
    _store_caseload_keys(ranks=ranks, dosings=schedule.dosing_starts, stored=stored_keys)
    cohort_measures_refresh(patient_ids=list(patients), spans=schedule.dosing_spans)
    return {
        "created": len(every.created),
        "updated": len(every.updated),
        "cleared": len(every.cleared),
    }


def _store_caseload_keys(*, ranks, dosings, stored) -> int:
    """`caseload_order_refresh` for a sweep's chunk, from the keys it has in hand: `ranks`
    ({patient id: rank of the most severe unresolved flag}), `dosings` ({patient id: start
    of every scheduled dosing}) and `stored` ({patient id: (rank, next dosing)} as the
    chunk read them under its lock). One UPDATE of the rows whose keys changed, and none
    when no key did (a sweep that changes nothing; sending every patient's keys to compare
    them in the database cost more than the comparison)."""
    now = timezone.now()
    changed = []
    for pk, kept in stored.items():
        keys = (ranks.get(pk), min((d for d in dosings.get(pk, ()) if d >= now), default=None))
        if keys != kept:
            changed.append((pk, *keys))
    if not changed:
        return 0
    table = connection.ops.quote_name(Patient._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table} AS p
            SET caseload_flag_rank = k.rank, caseload_next_dosing_at = k.start
            FROM unnest(%s::bigint[], %s::smallint[], %s::timestamptz[]) AS k (id, rank, start)
            WHERE p.id = k.id
            """,
            [[pk for pk, _, _ in changed], [r for _, r, _ in changed], [d for _, _, d in changed]],
        )
        return cursor.rowcount


def _resolved_with_same_basis(resolved: list[Flag], decision: rules.Decision) -> Flag | None:
    """The flag a person resolved for this very condition (same `flag_key` and basis).

    New evidence (a newer rating, another safety answer) is a new basis: a new flag.
    """
    wanted = rules.basis(decision.kind, decision.evidence)
    for flag in resolved:
        if (
            rules.flag_key(flag.kind, flag.dosing_session_id) == decision.key
            and rules.basis(flag.kind, flag.evidence) == wanted
        ):
            return flag
    return None


def enqueue_notifications(*, flag_ids: list[int]) -> None:
    from .tasks import notify_flags

    try:
        notify_flags.apply_async(args=[flag_ids], retry=False)
    except Exception:  # broker down: the nightly sweep's notify pass sends it later
        log.warning("Could not queue flag notifications; the sweep will send them.")


def _recipients(flag: Flag) -> list[str]:
    coaches = get_user_model().objects.filter(
        is_active=True,
        assignments__enrolment__patient=flag.patient,
        assignments__end_date__isnull=True,
    )
    clinicians = get_user_model().objects.filter(is_active=True, groups__name=Role.CLINICIAN)
    return sorted({u.email for u in coaches} | {u.email for u in clinicians})


def notify_flag(*, flag_id: int) -> bool:
    """Send the e-mail for a new flag once. Returns whether this call sent it."""
    claimed = Flag.objects.filter(pk=flag_id, notified_at__isnull=True).update(
        notified_at=timezone.now()
    )
    if not claimed:
        return False
    flag = Flag.objects.select_related("patient", "dosing_session").get(pk=flag_id)
    if not flag.is_unresolved:
        return False
    try:
        urgent = flag.severity == Flag.Severity.URGENT
        subject = (
            f"{'URGENT: ' if urgent else ''}{flag.get_kind_display()} — {settings.CLINIC_NAME}"
        )
        body = render_to_string(
            "alliance/email/new_flag.txt",
            {"flag": flag, "summary": selectors.flag_summary(flag), "site": settings.SITE_URL},
        )
        send_mail(subject, body, None, _recipients(flag), fail_silently=False)
    except Exception:
        # Give the claim back so a retry can send it.
        Flag.objects.filter(pk=flag_id).update(notified_at=None)
        raise
    return True


@transaction.atomic
def flag_acknowledge(*, actor, flag: Flag) -> Flag:
    flag = Flag.objects.select_for_update().get(pk=flag.pk)
    if flag.status != Flag.Status.OPEN:
        raise ValidationError(f"This flag is {flag.get_status_display().lower()} already.")
    flag.status = Flag.Status.ACKNOWLEDGED
    flag.acknowledged_at = timezone.now()
    flag.acknowledged_by = actor
    flag.save(update_fields=["status", "acknowledged_at", "acknowledged_by", "updated_at"])
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=flag,
        patient=flag.patient,
        detail={"flag": Flag.Status.ACKNOWLEDGED},
    )
    return flag


@transaction.atomic
def flag_resolve(*, actor, flag: Flag, note: str) -> Flag:
    flag = Flag.objects.select_for_update().get(pk=flag.pk)
    note = (note or "").strip()
    if not note:
        raise ValidationError({"note": "Say what was done, e.g. an extra preparation session."})
    if not flag.is_unresolved:
        raise ValidationError(f"This flag is {flag.get_status_display().lower()} already.")
    flag.status = Flag.Status.RESOLVED
    flag.resolved_at = timezone.now()
    flag.resolved_by = actor
    flag.resolution_note = note
    # Resolving records what a person did; it does not raise a weak bond. Until a newer
    # rating clears the condition (the next recompute says so), the dosing stays at risk.
    flag.still_applies = rules.Kind(flag.kind) not in rules.SETTLED_BY_A_PERSON
    flag.save(
        update_fields=[
            "status",
            "resolved_at",
            "resolved_by",
            "resolution_note",
            "still_applies",
            "updated_at",
        ]
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=flag,
        patient=flag.patient,
        detail={"flag": Flag.Status.RESOLVED},
    )
    caseload_order_refresh(patient_ids=[flag.patient_id])
    return flag


@transaction.atomic
def flag_rule_update(*, actor, rule: FlagRule, **values) -> FlagRule:
    """Change a program's thresholds (or the clinic default): validated as a whole, audited
    with old and new values, and the patients it applies to are recomputed once committed.
    Invalid values change nothing and recompute nothing."""
    unknown = set(values) - set(FlagRule.FIELDS)
    if unknown:
        raise ValidationError(f"Unknown threshold(s): {', '.join(sorted(unknown))}.")
    if rule.pk:
        # Read the stored values: a bound ModelForm has already written the typed ones on
        # the instance it was given.
        rule = FlagRule.objects.select_for_update().get(pk=rule.pk)
    before = {name: getattr(rule, name) for name in FlagRule.FIELDS} if rule.pk else {}
    for name, value in values.items():
        setattr(rule, name, value)
    rule.updated_by = actor
    rule.full_clean()
    rule.save()
    changed = {
        name: {"old": before.get(name), "new": getattr(rule, name)}
        for name in FlagRule.FIELDS
        if before.get(name) != getattr(rule, name)
    }
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE if before else AuditEvent.Action.CREATE,
        target=rule,
        detail={"program": rule.program_id, "thresholds": changed},
    )
    if changed:
        mark_stale(patient_ids=flag_inputs.patients_under_rule(rule=rule))
    return rule


@transaction.atomic
def dosing_sign_off(*, actor, dosing: Session, note: str = "") -> DosingSignOff:
    """Mark a dosing ready. With any risk, the risks are recorded with the signer's note
    (required); the same risks signed twice (two tabs, a double click) make one sign-off."""
    dosing = Session.objects.select_for_update().get(pk=dosing.pk)
    if not dosing.is_dosing or dosing.enrolment_id is None:
        raise ValidationError("Only an individual dosing session can be marked ready.")
    if dosing.status != Session.Status.SCHEDULED:
        raise ValidationError(f"This dosing is {dosing.get_status_display().lower()}.")
    answer = caseload.readiness_of(dosing)
    note = (note or "").strip()
    if answer.risks and not note:
        raise ValidationError(
            {"note": "Say why the dosing should go ahead despite the risks listed."}
        )
    latest = dosing.sign_offs.order_by("-signed_at", "-id").first()
    if latest is not None and latest.risk_keys == answer.risk_keys:
        return latest
    sign_off = DosingSignOff.objects.create(
        dosing_session=dosing,
        signed_by=actor,
        signed_at=timezone.now(),
        note=note,
        risks=[{"key": r.key, "text": r.text} for r in answer.risks],
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=dosing,
        patient=dosing.enrolment.patient,
        detail={
            "ready": "confirmed despite risks" if answer.risks else "ready",
            "risks": [r.text for r in answer.risks],
            "note": note,
        },
    )
    return sign_off


def adverse_event_tallies_refresh(*, now: datetime.datetime | None = None) -> int:
    """Count every program's adverse events per dosing and keep them for the program page
    (`selectors.program_adverse_events`). Beat runs it every five minutes. Returns the number
    of programs counted."""
    now = now or timezone.now()
    counted = 0
    for program in Program.objects.all():
        AdverseEventTally.objects.update_or_create(
            program=program,
            defaults={"counted_at": now, **selectors.adverse_event_tally(program=program)},
        )
        counted += 1
    return counted
