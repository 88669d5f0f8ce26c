"""Writes about flags: recompute from the database, acknowledge, resolve, notify.

`recompute_patient` is the only writer of automatic flag changes. It reads every fact from
the database, so running it twice, or out of order, leaves the same rows.
"""

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from clinic.audit import audit_record
from clinic.models import AuditEvent, Patient
from clinic.roles import Role

from . import rules, selectors
from .models import Flag, FlagRule

log = logging.getLogger(__name__)


def thresholds_for(*, patient: Patient) -> rules.Thresholds:
    """The active program's rule, else the clinic default, else DESIGN's defaults."""
    rule = selectors.flag_rule_for(patient=patient)
    return rule.thresholds() if rule else rules.Thresholds()


@transaction.atomic
def recompute_patient(*, patient_id: int, now=None) -> dict:
    now = now or timezone.now()
    # One recompute per patient at a time; a second waits and then sees the first's rows.
    patient = Patient.objects.select_for_update().get(pk=patient_id)
    facts = selectors.flag_facts(patient=patient, now=now)
    decisions = {d.key: d for d in rules.evaluate(facts, thresholds_for(patient=patient))}

    unresolved = {
        (f.kind, f.dosing_session_id): f
        for f in Flag.objects.select_for_update().filter(
            patient=patient, status__in=Flag.UNRESOLVED
        )
    }
    created, updated, cleared = [], [], []
    for key, decision in decisions.items():
        flag = unresolved.get(key)
        if flag is not None:
            if flag.evidence != decision.evidence or flag.severity != decision.severity:
                flag.evidence = decision.evidence
                flag.severity = decision.severity
                flag.save(update_fields=["evidence", "severity", "updated_at"])
                updated.append(flag)
            continue
        if _already_resolved_by_a_person(patient=patient, decision=decision):
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
    for key, flag in unresolved.items():
        if key not in decisions and rules.Kind(flag.kind) in rules.AUTO_RESOLVING:
            flag.status = Flag.Status.AUTO_RESOLVED
            flag.resolved_at = now
            flag.save(update_fields=["status", "resolved_at", "updated_at"])
            cleared.append(flag)

    if created:
        ids = [f.pk for f in created]
        transaction.on_commit(lambda: enqueue_notifications(flag_ids=ids), robust=True)
    return {"created": created, "updated": updated, "cleared": cleared}


def _already_resolved_by_a_person(*, patient, decision: rules.Decision) -> bool:
    """A person resolved this very condition (same evidence): do not raise it again.

    New evidence (a newer rating, another safety answer) raises a new flag.
    """
    return Flag.objects.filter(
        patient=patient,
        kind=decision.kind.value,
        dosing_session_id=decision.dosing_session_id,
        status=Flag.Status.RESOLVED,
        evidence=decision.evidence,
    ).exists()


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
        detail={"flag": "acknowledged"},
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
    flag.save(
        update_fields=["status", "resolved_at", "resolved_by", "resolution_note", "updated_at"]
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=flag,
        patient=flag.patient,
        detail={"flag": "resolved"},
    )
    return flag


@transaction.atomic
def flag_rule_update(*, actor, rule: FlagRule, **values) -> FlagRule:
    for name, value in values.items():
        setattr(rule, name, value)
    rule.updated_by = actor
    rule.full_clean()
    rule.save()
    return rule
