"""Self-report links: create, check, use once, and deliver by e-mail with reminders."""

import datetime
import secrets

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from clinic.audit import audit_record
from clinic.models import AuditEvent, Patient
from sessions.models import Session

from . import services
from .models import Response, SelfReportLink

MAX_REMINDERS = 3
GUESS_LIMIT = 10
GUESS_WINDOW = 600  # seconds


class LinkUnusable(Exception):
    """The link exists but cannot be used: expired or already answered."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def url_for(token: str) -> str:
    return f"{settings.SITE_URL}/q/{token}/"


@transaction.atomic
def link_create(
    *,
    actor,
    patient: Patient,
    instruments: list[str],
    session: Session | None = None,
    hours: int | None = None,
    by_email: bool = False,
) -> tuple[SelfReportLink, str]:
    if not instruments:
        raise ValidationError({"instruments": "Choose at least one questionnaire."})
    for code in instruments:
        version = services.latest_version(code)
        if version.definition["respondent"] != "patient":
            raise ValidationError({"instruments": f"{code.upper()} is not patient-rated."})
    hours = hours or settings.SELF_REPORT_LINK_HOURS
    if not 1 <= hours <= 24 * 14:
        raise ValidationError({"hours": "A link can last from 1 hour to 14 days."})
    token = secrets.token_urlsafe(32)
    link = SelfReportLink.objects.create(
        token_hash=SelfReportLink.hash_token(token),
        patient=patient,
        instruments=list(instruments),
        session=session,
        created_by=actor,
        expires_at=timezone.now() + datetime.timedelta(hours=hours),
        by_email=by_email,
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.CREATE,
        target=link,
        patient=patient,
        detail={"link": instruments, "hours": hours},
    )
    return link, token


def _guess_key(client: str) -> str:
    return f"link-guesses:{client}"


def too_many_guesses(client: str) -> bool:
    return cache.get(_guess_key(client), 0) >= GUESS_LIMIT


def _count_guess(client: str) -> None:
    key = _guess_key(client)
    if cache.add(key, 1, GUESS_WINDOW):
        return
    try:
        cache.incr(key)
    except ValueError:
        cache.set(key, 1, GUESS_WINDOW)


def link_for_token(token: str, *, client: str) -> SelfReportLink:
    """The link behind a token; unknown tokens count towards the client's guess limit."""
    link = (
        SelfReportLink.objects.select_related("patient")
        .filter(token_hash=SelfReportLink.hash_token(token))
        .first()
    )
    if link is None:
        _count_guess(client)
        raise SelfReportLink.DoesNotExist
    if link.used_at is not None:
        raise LinkUnusable("These questionnaires have already been answered. Thank you.")
    if link.expires_at <= timezone.now():
        raise LinkUnusable("This link has expired. Please ask the clinic for a new one.")
    return link


@transaction.atomic
def link_submit(*, link: SelfReportLink, answers: dict[str, dict]) -> list[Response]:
    """Record every questionnaire of the link, then close it: all or nothing, once."""
    link = SelfReportLink.objects.select_for_update().get(pk=link.pk)
    if link.used_at is not None:
        raise LinkUnusable("These questionnaires have already been answered. Thank you.")
    if link.expires_at <= timezone.now():
        raise LinkUnusable("This link has expired. Please ask the clinic for a new one.")
    responses, errors = [], {}
    for code in link.instruments:
        try:
            responses.append(
                services.response_record(
                    actor=None,
                    patient=link.patient,
                    version=services.latest_version(code),
                    answers=answers.get(code, {}),
                    administered_at=timezone.now(),
                    source=Response.Source.LINK,
                    session=link.session,
                )
            )
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                errors[f"{code}-{field}" if field != "__all__" else "__all__"] = messages
    if errors:
        transaction.set_rollback(True)
        raise ValidationError(errors)
    link.used_at = timezone.now()
    link.save(update_fields=["used_at"])
    audit_record(
        actor=None,
        action=AuditEvent.Action.UPDATE,
        target=link,
        patient=link.patient,
        detail={"link": "answered", "responses": len(responses)},
    )
    return responses


def _send(link: SelfReportLink, token: str, *, reminder: bool) -> None:
    body = render_to_string(
        "outcomes/email/link.txt",
        {
            "first_name": link.patient.first_name,
            "url": url_for(token),
            "expires_at": link.expires_at,
            "reminder": reminder,
            "clinic_name": settings.CLINIC_NAME,
            "crisis_contact": settings.CLINIC_CRISIS_CONTACT,
        },
    )
    subject = f"{'Reminder: ' if reminder else ''}Your questionnaires from {settings.CLINIC_NAME}"
    send_mail(subject, body, None, [link.patient.email])


def due_by_email(*, now=None) -> list[tuple[Session, Patient, list[str]]]:
    """Completed sessions of the last 3 days with patient questionnaires still unanswered,
    for patients who agreed to e-mail and have no live link for that session yet."""
    now = now or timezone.now()
    sessions = (
        Session.objects.filter(
            status=Session.Status.COMPLETED,
            scheduled_end__gte=now - datetime.timedelta(days=3),
            scheduled_end__lte=now,
            protocol_step__isnull=False,
        )
        .select_related("protocol_step")
        .prefetch_related("attendances__patient", "responses__version__instrument", "links")
    )
    due = []
    for session in sessions:
        for attendance in session.attendances.all():
            patient = attendance.patient
            if not (patient.email and patient.email_consent and attendance.status == "attended"):
                continue
            if any(link.patient_id == patient.pk for link in session.links.all()):
                continue
            answered = {
                r.version.instrument.code
                for r in session.responses.all()
                if r.patient_id == patient.pk
            }
            codes = [
                code
                for code in session.protocol_step.instruments_due
                if code not in answered and _patient_rated(code)
            ]
            if codes:
                due.append((session, patient, codes))
    return due


def _patient_rated(code: str) -> bool:
    try:
        return services.latest_version(code).definition["respondent"] == "patient"
    except ValidationError:
        return False


def send_due_links(*, now=None) -> int:
    """Beat job: create and mail links for newly due measures. Returns how many were sent."""
    sent = 0
    for session, patient, codes in due_by_email(now=now):
        with transaction.atomic():
            link, token = link_create(
                actor=None, patient=patient, instruments=codes, session=session, by_email=True
            )
            # The token exists only in this call: the first e-mail carries it.
            SelfReportLink.objects.filter(pk=link.pk).update(
                sent_at=timezone.now(), last_sent_at=timezone.now()
            )
            _send(link, token, reminder=False)
        sent += 1
    return sent


def send_reminders(*, now=None) -> int:
    """Remind once a day, at most three times, until the link is answered or expires.

    A reminder cannot repeat the token (only its hash is stored), so it replaces the link's
    token with a fresh one; the old link stops working at the same moment.
    """
    now = now or timezone.now()
    candidates = SelfReportLink.objects.filter(
        by_email=True,
        used_at__isnull=True,
        expires_at__gt=now,
        reminders_sent__lt=MAX_REMINDERS,
        last_sent_at__lte=now - datetime.timedelta(hours=24),
    ).select_related("patient")
    sent = 0
    for link in candidates:
        token = secrets.token_urlsafe(32)
        with transaction.atomic():
            # Claim: only the worker whose update changes the row sends this reminder.
            claimed = SelfReportLink.objects.filter(
                pk=link.pk, reminders_sent=link.reminders_sent, used_at__isnull=True
            ).update(
                reminders_sent=link.reminders_sent + 1,
                last_sent_at=now,
                token_hash=SelfReportLink.hash_token(token),
            )
            if not claimed:
                continue
            _send(link, token, reminder=True)
        sent += 1
    return sent
