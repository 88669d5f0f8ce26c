"""Writes about flags: recompute from the database, acknowledge, resolve, notify.

`recompute_patient` is the only writer of automatic flag changes. It reads every fact from
the database, so running it twice, or out of order, leaves the same rows.
"""

import contextlib
import contextvars
import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import DatabaseError, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from clinic.audit import audit_record
from clinic.models import AuditEvent, Patient
from clinic.roles import Role
from sessions.models import Session

from . import caseload, flag_inputs, rules, selectors, trajectories
from .models import DosingSignOff, Flag, FlagRule, StalePatient
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
    unresolved: dict[tuple, Flag] = {}
    merged: list[Flag] = []  # raised once per dosing before PER_PATIENT: kept is the oldest
    for f in (
        mine.select_for_update(of=("self",))
        .select_related("dosing_session")
        .filter(status__in=Flag.UNRESOLVED)
        .order_by("raised_at", "id")
    ):
        key = rules.flag_key(f.kind, f.dosing_session_id)
        if key in unresolved:
            merged.append(f)
        else:
            unresolved[key] = f
    resolved_by_people = list(mine.select_for_update().filter(status=Flag.Status.RESOLVED))
    still_applying: set[int] = set()
    created, updated, cleared = [], [], []
    for key, decision in decisions.items():
        flag = unresolved.get(key)
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
                flag.save(update_fields=["evidence", "severity", "dosing_session", "updated_at"])
                updated.append(flag)
            continue
        same = _resolved_with_same_basis(resolved_by_people, decision)
        if same is not None:
            # A person dealt with this very condition: no new flag, but it still holds.
            still_applying.add(same.pk)
            continue
        created.append(
            Flag.objects.create(
                patient=patient,
                kind=decision.kind.value,
                severity=decision.severity.value,
                dosing_session_id=decision.dosing_session_id,
                evidence=decision.evidence,
                raised_at=now,
            )
        )
    for flag in merged:
        flag.status = Flag.Status.AUTO_RESOLVED
        flag.resolved_at = now
        flag.resolution_note = "Merged into one flag for the patient's coming dosings."
        flag.save(update_fields=["status", "resolved_at", "resolution_note", "updated_at"])
        cleared.append(flag)
    for key, flag in unresolved.items():
        if key not in decisions and rules.Kind(flag.kind) in rules.AUTO_RESOLVING:
            flag.status = Flag.Status.AUTO_RESOLVED
            flag.resolved_at = now
            flag.resolution_note = _why_cleared(flag)
            flag.save(update_fields=["status", "resolved_at", "resolution_note", "updated_at"])
            cleared.append(flag)
    for flag in resolved_by_people:
        holds = flag.pk in still_applying
        if flag.still_applies != holds:
            flag.still_applies = holds
            flag.save(update_fields=["still_applies", "updated_at"])

    for flag in created:
        _audit_automatic(flag, patient, "raised")
    for flag in cleared:
        _audit_automatic(flag, patient, "cleared", note=flag.resolution_note)
    if kinds is None:
        # Changes committed after this recompute began may not be in what it read: they stay.
        StalePatient.objects.filter(patient=patient, since__lte=started).delete()
    if created:
        ids = [f.pk for f in created]
        transaction.on_commit(lambda: enqueue_notifications(flag_ids=ids), robust=True)
    return {"created": created, "updated": updated, "cleared": cleared}


# A coach's save is recomputed at once; a threshold change over a whole program is left to
# the drain (one task, oldest first) rather than flooding the queue ahead of coaches' saves.
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


def mark_stale(*, patient_ids) -> None:
    """Record, in the caller's transaction, that these patients' flags need a recompute, and
    once committed ask a worker to do it now. If the broker is down the drain does it."""
    ids = sorted(set(patient_ids))
    if not ids:
        return
    since = timezone.now()
    # An older mark stays: it already asks for everything after it.
    StalePatient.objects.bulk_create(
        [StalePatient(patient_id=pk, since=since) for pk in ids], ignore_conflicts=True
    )
    if len(ids) <= PUBLISH_AT_ONCE and _publishing.get():
        transaction.on_commit(lambda: enqueue_recompute(patient_ids=ids), robust=True)


def responses_saved(*, responses) -> None:
    """Inside the transaction that saved them: safety answers become flags at once (no broker
    needed), and everything else is recorded for the worker."""
    for patient_id in sorted(
        {r.patient_id for r in responses if r.has_safety_hit or r.safety_unanswered}
    ):
        recompute_patient(patient_id=patient_id, kinds=SAFETY_KINDS)
    mark_stale(patient_ids=[r.patient_id for r in responses])


def adverse_event_saved(*, patient_ids) -> None:
    """Inside the transaction that saved an adverse event: a serious one is flagged (and,
    once committed, notified exactly once) at once, broker or no broker; closing it clears
    the flag."""
    for patient_id in sorted(set(patient_ids)):
        recompute_patient(patient_id=patient_id, kinds=ADVERSE_EVENT_KINDS)


def _audit_automatic(flag: Flag, patient: Patient, change: str, note: str = "") -> None:
    """The flag engine's own changes, by the system (no actor)."""
    audit_record(
        actor=None,
        action=AuditEvent.Action.CREATE if change == "raised" else AuditEvent.Action.UPDATE,
        target=flag,
        patient=patient,
        detail={"flag": change, "kind": flag.kind, **({"note": note} if note else {})},
    )


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


def recompute_patients(*, patient_ids, now=None) -> tuple[dict[str, int], list[int]]:
    """Recompute many patients, each in its own transaction, with the clinic's percentiles
    read once. Returns the totals and the ids whose recompute failed (the next sweep retries
    them; nothing is half-written because each patient is one transaction)."""
    clinic_bonds = flag_inputs.clinic_bond_percentiles(flag_inputs.rule_percentiles())
    bond_bands = trajectories.load_bond_bands()
    totals = {"created": 0, "updated": 0, "cleared": 0}
    failed = []
    for patient_id in patient_ids:
        try:
            result = recompute_patient(
                patient_id=patient_id, now=now, clinic_bonds=clinic_bonds, bond_bands=bond_bands
            )
        except DatabaseError:
            failed.append(patient_id)
            log.exception("Recompute failed for patient id %s; the next sweep retries.", patient_id)
            continue
        for key, flags in result.items():
            totals[key] += len(flags)
    return totals, failed


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
