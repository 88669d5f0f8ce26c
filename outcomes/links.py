"""Self-report links: create, check, use once, and deliver by e-mail with reminders.

Only the SHA-256 of a token is stored. A link expires (SELF_REPORT_LINK_HOURS, default 72),
works once, and shows nothing identifying beyond the patient's first name. Opening it trades
the token for a short-lived entry in the server-side session and redirects to /q/answer/, so
the token is in one request line only (and that one is masked in the access log).

Requests with a token that matches no link are counted per client and token prefix: after
GUESS_LIMIT in GUESS_WINDOW, tokens starting the same way from that address get 429 until
the window passes. Someone completing a partly known token is stopped; a patient on the same
clinic Wi-Fi with another link is not (a whole random token is 256 bits: guessing one is
hopeless anyway).

E-mail: an hourly beat job mails a link for the patient-rated questionnaires still due after
a completed session (patients with an address and e-mail consent), and reminds once a day, at
most three times, until the link is answered, expires, or the clinic entered the answers
(or the patient withdraws their e-mail consent or from treatment).
"""

import datetime
import logging
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.crypto import salted_hmac

from clinic.audit import audit_record
from clinic.models import AuditEvent, Patient
from sessions.models import Attendance, Session, SessionKind

from . import services
from .models import Instrument, LinkGuess, Respondent, Response, SelfReportLink

log = logging.getLogger(__name__)

MAX_REMINDERS = 3
GUESS_LIMIT = 10
GUESS_WINDOW = datetime.timedelta(minutes=10)
# How much of a guessed token keys the limit, with the address (see the module docstring).
GUESS_PREFIX = 8
# Questionnaires about a dosing day (MEQ-30, PIQ, EBI) are asked the day after, not that night.
SEND_DELAY = {SessionKind.DOSING: datetime.timedelta(hours=18)}
# A session's questionnaires are mailed only while they are fresh.
SEND_WINDOW = datetime.timedelta(days=3)
# Answers sent shortly after the link expired are still taken: the patient opened the page
# while it was valid and should not lose what they typed.
SUBMIT_GRACE = datetime.timedelta(hours=1)


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
    if session is not None and not session.attendances.filter(patient=patient).exists():
        raise ValidationError({"session": "This patient was not booked for that session."})
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


def client_id(meta: dict, *, token: str = "") -> str:
    """A keyed hash of the client's address and the first GUESS_PREFIX characters of the
    token it tries (neither stored in the clear). Behind TRUSTED_PROXY_COUNT proxies the
    address is taken from X-Forwarded-For, counted from the right, so a client cannot pick
    its own identity by sending the header itself."""
    address = meta.get("REMOTE_ADDR", "")
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies:
        forwarded = [a.strip() for a in meta.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [a for a in forwarded if a]
        if len(forwarded) >= proxies:
            address = forwarded[-proxies]
    key = f"{address or 'unknown'}|{token[:GUESS_PREFIX]}"
    return salted_hmac("outcomes.link-guess", key, algorithm="sha256").hexdigest()


def too_many_guesses(client: str) -> bool:
    since = timezone.now() - GUESS_WINDOW
    return LinkGuess.objects.filter(client=client, at__gte=since).count() >= GUESS_LIMIT


def _count_guess(client: str) -> None:
    LinkGuess.objects.create(client=client)


def forget_old_guesses() -> int:
    """Guesses older than a day no longer matter (the window is minutes)."""
    cutoff = timezone.now() - datetime.timedelta(days=1)
    return LinkGuess.objects.filter(at__lt=cutoff).delete()[0]


def _by_token(token: str):
    digest = SelfReportLink.hash_token(token)
    return SelfReportLink.objects.filter(
        Q(token_hash=digest) | Q(earlier_token_hashes__contains=[digest])
    )


def outstanding(link: SelfReportLink) -> list[str]:
    """The link's questionnaires not yet answered for its session (the clinic may have entered
    some from paper meanwhile). A link without a session asks for all of them."""
    if link.session_id is None:
        return list(link.instruments)
    answered = set(
        Response.objects.filter(patient_id=link.patient_id, session_id=link.session_id).values_list(
            "version__instrument__code", flat=True
        )
    )
    return [code for code in link.instruments if code not in answered]


ANSWERED = "These questionnaires have already been answered. Thank you."
EXPIRED = "This link has expired. Please ask the clinic for a new one."


def _expired(link: SelfReportLink, *, submitting: bool) -> bool:
    grace = SUBMIT_GRACE if submitting else datetime.timedelta(0)
    return link.expires_at + grace <= timezone.now()


def _usable(link: SelfReportLink, *, submitting: bool) -> SelfReportLink:
    if link.used_at is not None or not outstanding(link):
        raise LinkUnusable(ANSWERED)
    if _expired(link, submitting=submitting):
        raise LinkUnusable(EXPIRED)
    return link


def link_for_token(token: str, *, client: str, submitting: bool = False) -> SelfReportLink:
    """The link behind a token; unknown tokens count towards the client's guess limit."""
    link = _by_token(token).select_related("patient").first()
    if link is None:
        _count_guess(client)
        raise SelfReportLink.DoesNotExist
    return _usable(link, submitting=submitting)


def link_by_id(link_id: int, *, submitting: bool = False) -> SelfReportLink:
    """The link a browser opened earlier (its id is kept in the server-side session)."""
    link = SelfReportLink.objects.select_related("patient").get(pk=link_id)
    return _usable(link, submitting=submitting)


@transaction.atomic
def link_submit(*, link: SelfReportLink, answers: dict[str, dict]) -> list[Response]:
    """Record every questionnaire of the link still outstanding, then close it: all or
    nothing, once. Errors are keyed "<code>-<field>" (e.g. "srs-item_2") or "<code>"."""
    link = SelfReportLink.objects.select_for_update().select_related("patient").get(pk=link.pk)
    if link.used_at is not None:
        raise LinkUnusable(ANSWERED)
    if _expired(link, submitting=True):
        raise LinkUnusable(EXPIRED)
    codes = outstanding(link)
    if not codes:
        raise LinkUnusable(ANSWERED)
    responses, errors = [], {}
    for code in codes:
        version = services.latest_version(code)
        given = answers.get(code, {})
        missing = services.unscorable_missing(version.definition, given)
        if missing:
            errors[code] = [
                f"Please answer more of these questions (still empty: "
                f"{', '.join(map(str, missing))})."
            ]
            continue
        try:
            responses.append(
                services.response_record(
                    actor=None,
                    patient=link.patient,
                    version=version,
                    answers=given,
                    administered_at=timezone.now(),
                    source=Response.Source.LINK,
                    session=link.session,
                )
            )
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                errors[code if field == "__all__" else f"{code}-{field}"] = messages
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
        detail={"link": "answered", "instruments": codes},
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


def _may_mail(patient: Patient) -> bool:
    return bool(
        patient.email and patient.email_consent and patient.status != Patient.Status.WITHDRAWN
    )


def may_email(patient: Patient) -> bool:
    """Whether staff may e-mail this patient a link now: an address, their agreement, and
    still in care (the same rule as the hourly e-mails)."""
    return _may_mail(patient)


@transaction.atomic
def link_email_now(
    *,
    actor,
    patient: Patient,
    instruments: list[str],
    session: Session | None = None,
    hours: int | None = None,
) -> tuple[SelfReportLink, str]:
    """Create a link and e-mail it to the patient at once; audited as created and as e-mailed.

    It counts as the session's e-mailed link, so the daily reminders follow it and the hourly
    job sends no second one. The mail goes out inside the transaction: if the mail server
    refuses it, no link is left behind and the form says so.
    """
    if not _may_mail(patient):
        raise ValidationError(
            {"send_by_email": f"{patient.first_name} has not agreed to e-mail (or has no address)."}
        )
    try:
        with transaction.atomic():
            link, token = link_create(
                actor=actor,
                patient=patient,
                instruments=instruments,
                session=session,
                hours=hours,
                by_email=True,
            )
    except IntegrityError as exc:
        raise ValidationError(
            {
                "send_by_email": "A link for this session was already e-mailed to them (it is "
                "reminded daily). Untick e-mail to give a new one in the room."
            }
        ) from exc
    now = timezone.now()
    SelfReportLink.objects.filter(pk=link.pk).update(sent_at=now, last_sent_at=now)
    try:
        _send(link, token, reminder=False)
    except OSError as exc:  # smtplib's errors are OSErrors: the server is down or refused it
        log.warning("Could not e-mail a questionnaire link (link id %s): %s", link.pk, exc)
        raise ValidationError(
            "The e-mail could not be sent, so no link was created. Try again, or untick e-mail "
            "and give the link in the room."
        ) from exc
    audit_record(
        actor=actor,
        action=AuditEvent.Action.UPDATE,
        target=link,
        patient=patient,
        detail={"link": "e-mailed"},
    )
    link.refresh_from_db()
    return link, token


def due_by_email(*, now=None) -> list[tuple[Session, Patient, list[str]]]:
    """Patient-rated questionnaires due after completed sessions, ready to mail: the session
    ended at least its send delay ago and not more than SEND_WINDOW before that, the patient
    came, has an address and agreed to e-mail, and no e-mailed link exists for that session."""
    now = now or timezone.now()
    patient_rated = set(
        Instrument.objects.filter(respondent=Respondent.PATIENT).values_list("code", flat=True)
    )
    longest = max(SEND_DELAY.values(), default=datetime.timedelta(0))
    sessions = (
        Session.objects.filter(
            status=Session.Status.COMPLETED,
            scheduled_end__gte=now - SEND_WINDOW - longest,
            scheduled_end__lte=now,
            protocol_step__isnull=False,
        )
        .select_related("protocol_step")
        .prefetch_related("attendances__patient", "responses__version__instrument", "links")
        .order_by("scheduled_end", "id")
    )
    due = []
    for session in sessions:
        ready_at = session.scheduled_end + SEND_DELAY.get(session.kind, datetime.timedelta(0))
        if not ready_at <= now <= ready_at + SEND_WINDOW:
            continue
        for attendance in session.attendances.all():
            patient = attendance.patient
            if attendance.status not in Attendance.PRESENT:
                continue
            if not _may_mail(patient):
                continue
            if any(link.patient_id == patient.pk and link.by_email for link in session.links.all()):
                continue
            answered = {
                r.version.instrument.code
                for r in session.responses.all()
                if r.patient_id == patient.pk
            }
            codes = [
                code
                for code in session.protocol_step.instruments_due
                if code in patient_rated and code not in answered
            ]
            if codes:
                due.append((session, patient, codes))
    return due


def send_due_links(*, now=None) -> int:
    """Beat job: create and mail links for newly due measures. Returns how many were sent.

    The unique (patient, session) constraint on e-mailed links is the claim: when two workers
    run at once, one insert fails and that worker sends nothing. The mail is sent inside the
    transaction, so a mail server error leaves no link behind and the next run tries again.
    """
    sent = 0
    for session, patient, codes in due_by_email(now=now):
        try:
            with transaction.atomic():
                link, token = link_create(
                    actor=None, patient=patient, instruments=codes, session=session, by_email=True
                )
                SelfReportLink.objects.filter(pk=link.pk).update(
                    sent_at=timezone.now(), last_sent_at=timezone.now()
                )
                # The token exists only in this call: the first e-mail carries it.
                _send(link, token, reminder=False)
        except IntegrityError:
            continue  # another worker claimed this session's e-mail
        except Exception:
            log.exception("Could not mail questionnaires for session id %s", session.pk)
            continue
        sent += 1
    return sent


def send_reminders(*, now=None) -> int:
    """Remind once a day, at most three times, until the link is answered or expires (or the
    clinic has entered every questionnaire of it).

    A reminder cannot repeat the token (only its hash is stored), so it carries a fresh one;
    the tokens of earlier e-mails keep working. Each reminder is claimed with a conditional
    update, so two workers never send the same one.
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
        if not _may_mail(link.patient) or not outstanding(link):
            continue  # consent withdrawn, patient withdrawn, or nothing left to answer
        token = secrets.token_urlsafe(32)
        try:
            with transaction.atomic():
                claimed = SelfReportLink.objects.filter(
                    pk=link.pk,
                    reminders_sent=link.reminders_sent,
                    token_hash=link.token_hash,
                    used_at__isnull=True,
                ).update(
                    reminders_sent=link.reminders_sent + 1,
                    last_sent_at=now,
                    token_hash=SelfReportLink.hash_token(token),
                    earlier_token_hashes=[*link.earlier_token_hashes, link.token_hash],
                )
                if not claimed:
                    continue
                _send(link, token, reminder=True)
        except Exception:
            log.exception("Could not mail a reminder for link id %s", link.pk)
            continue
        sent += 1
    return sent
