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
a completed session, and for those the protocol's measurement schedule puts on the calendar
(follow-ups after the last dosing, recurring measures) whether or not a visit was logged, to
patients with an address and e-mail consent. Reminders follow, three by default, a day apart,
until the link is answered, expires, or the clinic entered the answers (or the patient
withdraws their e-mail consent or from treatment). A link with reminders lives until a day
after the last one; a staff member who chose a shorter life gets them spaced to fit.

Sending is claim, commit, then mail: the link row (unique per session or per calendar
occasion) is the claim, so a second beat run in the same minute sends nothing. A mail server
that refuses is recorded on the link (the delivery log shows it) and the link is mailed again,
with a fresh token, on the next runs.
"""

import datetime
import logging
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.crypto import salted_hmac

from clinic.audit import audit_record
from clinic.models import AuditEvent, Patient
from sessions.models import Attendance, Session, SessionKind
from sessions.schedules import TimePoint

from . import selectors, services
from .models import Instrument, LinkGuess, Respondent, Response, SelfReportLink

log = logging.getLogger(__name__)

MAX_REMINDERS = 3
# The reminders' usual spacing; shorter only when a link's chosen life is too short for it.
REMINDER_EVERY = datetime.timedelta(days=1)
# Beat's hourly runs start a little after the hour: a reminder due within this is sent now.
REMINDER_SLACK = datetime.timedelta(minutes=10)
# A claimed link not yet mailed after this long lost its worker (or its mail server): retry.
UNSENT_RETRY_AFTER = datetime.timedelta(minutes=10)
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
    reminders: int = MAX_REMINDERS,
    occasion: TimePoint | None = None,
) -> tuple[SelfReportLink, str]:
    """A link for the patient's questionnaires. With reminders and no chosen life, the link
    lives until a day after the last reminder; `occasion` marks a calendar time point."""
    if not instruments:
        raise ValidationError({"instruments": "Choose at least one questionnaire."})
    if session is not None and not session.attendances.filter(patient=patient).exists():
        raise ValidationError({"session": "This patient was not booked for that session."})
    for code in instruments:
        version = services.latest_version(code)
        if version.definition["respondent"] != "patient":
            raise ValidationError({"instruments": f"{code.upper()} is not patient-rated."})
    if not 0 <= reminders <= MAX_REMINDERS:
        raise ValidationError({"reminders": f"From 0 to {MAX_REMINDERS} reminders."})
    if hours is None:
        hours = max(settings.SELF_REPORT_LINK_HOURS, 24 * (reminders + 1) if reminders else 0)
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
        reminders=reminders,
        **(
            {
                "schedule_key": occasion.key,
                "time_point": occasion.label,
                "due_on": occasion.due_on,
                "window_days": occasion.window_days,
            }
            if occasion is not None
            else {}
        ),
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.CREATE,
        target=link,
        patient=patient,
        detail={
            "link": instruments,
            "hours": hours,
            "reminders": reminders,
            **({"time_point": occasion.key} if occasion is not None else {}),
        },
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
    """The link's questionnaires not yet answered for its session, or for a calendar time
    point within its window (the clinic may have entered some from paper meanwhile). Any
    other link asks for all of them."""
    responses = Response.objects.filter(patient_id=link.patient_id)
    if link.session_id is not None:
        responses = responses.filter(session_id=link.session_id)
    elif link.due_on is not None:
        window = datetime.timedelta(days=link.window_days or 0)
        responses = responses.filter(
            administered_at__date__gte=link.due_on - window,
            administered_at__date__lte=link.due_on + window,
        )
    else:
        return list(link.instruments)
    answered = set(responses.values_list("version__instrument__code", flat=True))
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
    link = _usable(link, submitting=submitting)
    _record_opened(link)
    return link


def _record_opened(link: SelfReportLink) -> None:
    """The first time a patient opens a link, for the delivery log."""
    with transaction.atomic():
        if SelfReportLink.objects.filter(pk=link.pk, opened_at=None).update(
            opened_at=timezone.now()
        ):
            audit_record(
                actor=None,
                action=AuditEvent.Action.UPDATE,
                target=link,
                patient=link.patient,
                detail={"link": "opened"},
            )


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
    responses = services.record_patient_answers(
        patient=link.patient,
        session=link.session,
        codes=codes,
        answers=answers,
        source=Response.Source.LINK,
    )
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
            "time_point": link.time_point,
            "clinic_name": settings.CLINIC_NAME,
            "crisis_contact": settings.CLINIC_CRISIS_CONTACT,
        },
    )
    subject = f"{'Reminder: ' if reminder else ''}Your questionnaires from {settings.CLINIC_NAME}"
    if link.time_point:
        subject += f" ({link.time_point})"
    send_mail(subject, body, None, [link.patient.email])


def may_email(patient: Patient) -> bool:
    """Whether the patient may be e-mailed a link now: an address, their agreement, and still
    in care. The hourly and daily jobs and staff's "e-mail it now" ask the same."""
    return bool(
        patient.email and patient.email_consent and patient.status != Patient.Status.WITHDRAWN
    )


def _live_email_codes(patient_ids, now) -> set[tuple[int, str]]:
    """(patient id, code) already on an e-mailed link that still works: not mailed twice."""
    rows = SelfReportLink.objects.filter(
        patient_id__in=patient_ids, by_email=True, used_at__isnull=True, expires_at__gt=now
    ).values_list("patient_id", "instruments")
    return {(patient_id, code) for patient_id, codes in rows for code in codes}


@transaction.atomic
def link_email_now(
    *,
    actor,
    patient: Patient,
    instruments: list[str],
    session: Session | None = None,
    hours: int | None = None,
    reminders: int = MAX_REMINDERS,
) -> tuple[SelfReportLink, str]:
    """Create a link and e-mail it to the patient at once; audited as created and as e-mailed.

    It counts as the session's e-mailed link, so the daily reminders follow it and the hourly
    job sends no second one. The mail goes out inside the transaction: if the mail server
    refuses it, no link is left behind and the form says so.
    """
    if not may_email(patient):
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
                reminders=reminders,
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
    came, has an address and agreed to e-mail, and no e-mailed link exists for that session
    (nor a live one from the calendar with the same questionnaire)."""
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
    due, live = [], None
    for session in sessions:
        ready_at = session.scheduled_end + SEND_DELAY.get(session.kind, datetime.timedelta(0))
        if not ready_at <= now <= ready_at + SEND_WINDOW:
            continue
        for attendance in session.attendances.all():
            patient = attendance.patient
            if attendance.status not in Attendance.PRESENT:
                continue
            if not may_email(patient):
                continue
            if any(link.patient_id == patient.pk and link.by_email for link in session.links.all()):
                continue
            if live is None:
                live = _live_email_codes(
                    {a.patient_id for s in sessions for a in s.attendances.all()}, now
                )
            answered = {
                r.version.instrument.code
                for r in session.responses.all()
                if r.patient_id == patient.pk
            }
            codes = [
                code
                for code in session.protocol_step.instruments_due
                if code in patient_rated and code not in answered and (patient.pk, code) not in live
            ]
            if codes:
                due.append((session, patient, codes))
    return due


def _mail_first(link: SelfReportLink, token: str) -> bool:
    """Mail a claimed link; a refusal is recorded on it (no address or message text: they
    can name the patient) for the delivery log and the next run's retry."""
    now = timezone.now()
    try:
        _send(link, token, reminder=False)
    except Exception as exc:
        code = getattr(exc, "smtp_code", None)
        failure = f"{type(exc).__name__}{f' {code}' if code else ''}"
        with transaction.atomic():
            SelfReportLink.objects.filter(pk=link.pk).update(
                failed_attempts=F("failed_attempts") + 1,
                last_failure_at=now,
                last_failure=failure,
            )
            audit_record(
                actor=None,
                action=AuditEvent.Action.UPDATE,
                target=link,
                patient=link.patient,
                detail={"link": "bounced", "failure": failure},
            )
        log.warning("Could not mail questionnaire link id %s: %s", link.pk, failure)
        return False
    with transaction.atomic():
        SelfReportLink.objects.filter(pk=link.pk).update(sent_at=now, last_sent_at=now)
        audit_record(
            actor=None,
            action=AuditEvent.Action.UPDATE,
            target=link,
            patient=link.patient,
            detail={"link": "sent"},
        )
    return True


def _claim_and_mail(**create) -> bool | None:
    """Create the e-mailed link (the claim) and commit it, then mail it. None when another
    worker holds the claim already."""
    try:
        with transaction.atomic():
            link, token = link_create(actor=None, by_email=True, **create)
    except IntegrityError:
        return None
    return _mail_first(link, token)


def send_due_links(*, now=None) -> int:
    """Hourly beat job: create and mail links for measures newly due after logged sessions,
    and mail again the links whose first e-mail failed. Returns how many e-mails went out."""
    now = now or timezone.now()
    sent = 0
    for session, patient, codes in due_by_email(now=now):
        sent += bool(_claim_and_mail(patient=patient, instruments=codes, session=session))
    return sent + retry_unsent(now=now)


def send_calendar_measures(*, now=None) -> int:
    """Daily beat job (09:00 clinic time): mail what the protocols' measurement schedules put
    on today's calendar (or earlier in a window still open), whether or not a visit was
    logged, then remind the calendar's earlier links, so a patient gets one e-mail a day from
    it. Returns how many e-mails went out."""
    now = now or timezone.now()
    sent = 0
    for due in selectors.calendar_due_to_send(now=now):
        sent += bool(
            _claim_and_mail(patient=due.patient, instruments=due.to_mail, occasion=due.point)
        )
    return sent + send_reminders(now=now, calendar=True)


def retry_unsent(*, now=None) -> int:
    """Mail again, with a fresh token (the first one was never delivered and is not stored),
    the e-mailed links whose first e-mail failed or whose worker stopped before mailing."""
    now = now or timezone.now()
    stuck = SelfReportLink.objects.filter(
        by_email=True,
        sent_at__isnull=True,
        used_at__isnull=True,
        expires_at__gt=now,
        failed_attempts__lt=SelfReportLink.MAX_SEND_ATTEMPTS,
    ).filter(
        # Not the ones this run just tried: a refusing server is asked again on a later run.
        Q(failed_attempts__gt=0, last_failure_at__lte=now - UNSENT_RETRY_AFTER)
        | Q(failed_attempts=0, created_at__lte=now - UNSENT_RETRY_AFTER)
    )
    sent = 0
    for link in stuck.select_related("patient"):
        if not may_email(link.patient):
            continue
        token = secrets.token_urlsafe(32)
        claimed = SelfReportLink.objects.filter(
            pk=link.pk, token_hash=link.token_hash, sent_at__isnull=True
        ).update(token_hash=SelfReportLink.hash_token(token))
        if claimed:
            link.token_hash = SelfReportLink.hash_token(token)
            sent += _mail_first(link, token)
    return sent


def reminder_spacing(link: SelfReportLink) -> datetime.timedelta:
    """A day, or less when the link's life from its first e-mail (or its creation) cannot hold
    every reminder a day apart plus a day to answer the last."""
    start = link.sent_at or link.created_at
    return min(REMINDER_EVERY, (link.expires_at - start) / (link.reminders + 1))


def send_reminders(*, now=None, calendar: bool = False) -> int:
    """Remind until the link is answered or expires (or the clinic has entered every
    questionnaire of it), as many times as the link plans, spaced to fit its life. Staff-made
    links are reminded too unless staff opted out.

    A reminder cannot repeat the token (only its hash is stored), so it carries a fresh one;
    the tokens of earlier e-mails keep working. Each reminder is claimed with a conditional
    update, so two workers never send the same one. The hourly job reminds the links made
    after sessions and by staff; the daily calendar job (`calendar=True`) its own.
    """
    now = now or timezone.now()
    candidates = (
        SelfReportLink.objects.filter(
            used_at__isnull=True,
            expires_at__gt=now,
            reminders_sent__lt=F("reminders"),
        )
        .exclude(by_email=True, sent_at__isnull=True)
        .select_related("patient")
    )
    if calendar:
        candidates = candidates.exclude(schedule_key="")
    else:
        candidates = candidates.filter(schedule_key="")
    sent = 0
    for link in candidates:
        last = link.last_sent_at or link.created_at
        if last + reminder_spacing(link) - REMINDER_SLACK > now:
            continue
        if not may_email(link.patient) or not outstanding(link):
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
                audit_record(
                    actor=None,
                    action=AuditEvent.Action.UPDATE,
                    target=link,
                    patient=link.patient,
                    detail={"link": "reminded", "reminder": link.reminders_sent + 1},
                )
                _send(link, token, reminder=True)
        except Exception:
            log.exception("Could not mail a reminder for link id %s", link.pk)
            continue
        sent += 1
    return sent
