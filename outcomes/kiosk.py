"""Kiosk mode: a tablet handed to the patient in the room for the questionnaires due at a session.

A coach (a facilitator of the session) or a clinician or admin who may see the patient starts
it on the tablet. The browser is then signed out of their account and keeps only a signed token
naming one `Kiosk` row: it opens that patient's due questionnaires at that session and nothing
else (every other page asks for a sign-in). The kiosk ends when the answers are sent, when the
patient hands it back, or after IDLE minutes without a request; the tablet then shows a locked
screen that the coach reopens with their sign-in or the short code shown at the start (a
handful of tries, then only the sign-in). Start, submit, lock, end and unlock are audited.
"""

import datetime
import enum
import secrets
import uuid

from django.contrib.auth.hashers import check_password, make_password
from django.core import signing
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from clinic.access import patients_visible_to
from clinic.audit import audit_record
from clinic.models import AuditEvent, Patient
from sessions.models import Session
from sessions.selectors import can_log

from . import selectors
from .models import Kiosk, KioskEnd, Response
from .services import record_patient_answers

IDLE = datetime.timedelta(minutes=30)
# The signed token is refused after this long whatever the row says (a stale tab, a copy).
TOKEN_MAX_AGE = datetime.timedelta(hours=4)
# Wrong unlock codes before the code stops working and only the coach's sign-in unlocks.
UNLOCK_TRIES = 5
# A code unlocks the tablet this long after the kiosk ended; later, only the sign-in does.
UNLOCK_WINDOW = datetime.timedelta(hours=1)
CODE_DIGITS = 6
_SALT = "outcomes.kiosk"


class KioskEvent(enum.StrEnum):
    """What the audit trail says happened to a kiosk (detail["kiosk"])."""

    STARTED = "started"
    SUBMITTED = "submitted"
    LOCKED = "locked"
    ENDED = "ended"
    WRONG_CODE = "wrong code"
    UNLOCKED = "unlocked"


class KioskClosed(Exception):
    """The kiosk has ended (answers sent, handed back or left idle): show the locked screen."""


def may_start(user, *, session: Session) -> bool:
    """Whoever may log the session: its own coaches, or clinicians and admins."""
    return can_log(user, session)


def token_for(kiosk: Kiosk) -> str:
    return signing.dumps({"kiosk": str(kiosk.public_id)}, salt=_SALT)


def kiosk_for_token(token: str) -> Kiosk:
    """The kiosk a signed token names; Kiosk.DoesNotExist for a forged, old or unknown one."""
    try:
        payload = signing.loads(token, salt=_SALT, max_age=TOKEN_MAX_AGE)
        return Kiosk.objects.select_related("patient", "session").get(
            public_id=uuid.UUID(payload["kiosk"])
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError) as exc:
        raise Kiosk.DoesNotExist from exc


def _audit(kiosk: Kiosk, event: KioskEvent, *, actor=None, **detail) -> None:
    started = event == KioskEvent.STARTED
    audit_record(
        actor=actor,
        action=AuditEvent.Action.CREATE if started else AuditEvent.Action.UPDATE,
        target=kiosk,
        patient=kiosk.patient,
        detail={"kiosk": str(event), **detail},
    )


def _end(kiosk: Kiosk, *, reason: str, at: datetime.datetime) -> None:
    """Lock the screen and end the kiosk (the row is locked by the caller)."""
    kiosk.ended_at = at
    kiosk.end_reason = reason
    kiosk.save(update_fields=["ended_at", "end_reason"])
    _audit(kiosk, KioskEvent.LOCKED)
    _audit(kiosk, KioskEvent.ENDED, reason=reason)


@transaction.atomic
def kiosk_start(*, actor, session: Session, patient: Patient) -> tuple[Kiosk, str]:
    """Start a kiosk for one patient at a session. Returns the kiosk and its unlock code (shown
    once, to the coach). A kiosk still running for the same patient and session ends."""
    if not may_start(actor, session=session):
        raise PermissionDenied
    if not patients_visible_to(actor).filter(pk=patient.pk).exists():
        raise PermissionDenied
    codes = selectors.due_in_room(session=session, patient=patient)
    if not codes:
        raise ValidationError(
            {"patient": f"Nothing is left for {patient.first_name} to answer at this session."}
        )
    now = timezone.now()
    for running in Kiosk.objects.select_for_update().filter(
        patient=patient, session=session, ended_at__isnull=True
    ):
        _end(running, reason=KioskEnd.REPLACED, at=now)
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    try:
        with transaction.atomic():
            kiosk = Kiosk.objects.create(
                patient=patient,
                session=session,
                started_by=actor,
                instruments=codes,
                unlock_code_hash=make_password(code),
                started_at=now,
                last_seen_at=now,
            )
    except IntegrityError as exc:
        # A second tap on Start, at the same moment: the first kiosk stands.
        raise ValidationError(
            {"patient": "A kiosk was just started for this patient. Start it again if needed."}
        ) from exc
    _audit(kiosk, KioskEvent.STARTED, actor=actor, instruments=codes)
    return kiosk, code


def idle(kiosk: Kiosk, *, now: datetime.datetime) -> bool:
    return kiosk.last_seen_at + IDLE <= now


def kiosk_open(*, kiosk: Kiosk) -> tuple[Kiosk, list[str]]:
    """The patient's request: the questionnaires still to answer, and the idle clock restarts.
    KioskClosed once it has ended, ending it first if it was left idle (that end is kept)."""
    with transaction.atomic():
        kiosk = (
            Kiosk.objects.select_for_update().select_related("patient", "session").get(pk=kiosk.pk)
        )
        now = timezone.now()
        if kiosk.ended_at is None and idle(kiosk, now=now):
            _end(kiosk, reason=KioskEnd.IDLE, at=now)
        if kiosk.ended_at is None:
            kiosk.last_seen_at = now
            kiosk.save(update_fields=["last_seen_at"])
    if kiosk.ended_at is not None:
        raise KioskClosed
    return kiosk, outstanding(kiosk)


def outstanding(kiosk: Kiosk) -> list[str]:
    """The kiosk's questionnaires not yet answered at its session (by anyone's entry)."""
    answered = set(
        Response.objects.filter(
            patient_id=kiosk.patient_id, session_id=kiosk.session_id
        ).values_list("version__instrument__code", flat=True)
    )
    return [code for code in kiosk.instruments if code not in answered]


def _submission_key(kiosk: Kiosk, code: str) -> uuid.UUID:
    """One key per kiosk and questionnaire: a repeated send finds the first response."""
    return uuid.uuid5(kiosk.public_id, code)


def kiosk_submit(*, kiosk: Kiosk, answers: dict[str, dict]) -> list[Response]:
    """Record the patient's answers, all or none, then lock and end the kiosk. A second send
    (a double tap, a reload) records nothing more: KioskClosed. So does a send after IDLE."""
    if kiosk_lock_if_idle(kiosk=kiosk):
        raise KioskClosed
    return _submit(kiosk=kiosk, answers=answers)


@transaction.atomic
def _submit(*, kiosk: Kiosk, answers: dict[str, dict]) -> list[Response]:
    kiosk = Kiosk.objects.select_for_update().select_related("patient", "session").get(pk=kiosk.pk)
    now = timezone.now()
    if kiosk.ended_at is not None or idle(kiosk, now=now):
        raise KioskClosed  # ended since the check above: nothing was written here
    codes = outstanding(kiosk)
    responses = record_patient_answers(
        patient=kiosk.patient,
        session=kiosk.session,
        codes=codes,
        answers=answers,
        source=Response.Source.KIOSK,
        keys={code: _submission_key(kiosk, code) for code in codes},
    )
    kiosk.submitted_at = now
    kiosk.save(update_fields=["submitted_at"])
    _audit(kiosk, KioskEvent.SUBMITTED, instruments=codes)
    _end(kiosk, reason=KioskEnd.SUBMITTED, at=now)
    return responses


@transaction.atomic
def kiosk_hand_back(*, kiosk: Kiosk) -> None:
    """The patient (or the coach) hands the tablet back before sending: lock it."""
    kiosk = Kiosk.objects.select_for_update().select_related("patient").get(pk=kiosk.pk)
    if kiosk.ended_at is None:
        now = timezone.now()
        _end(kiosk, reason=KioskEnd.IDLE if idle(kiosk, now=now) else KioskEnd.HANDED_BACK, at=now)


@transaction.atomic
def kiosk_lock_if_idle(*, kiosk: Kiosk) -> bool:
    """End a kiosk left idle; whether it has ended (now or before)."""
    kiosk = Kiosk.objects.select_for_update().select_related("patient").get(pk=kiosk.pk)
    now = timezone.now()
    if kiosk.ended_at is None and idle(kiosk, now=now):
        _end(kiosk, reason=KioskEnd.IDLE, at=now)
    return kiosk.ended_at is not None


WRONG_CODE = "That code is not right. Ask your coach to unlock the tablet."
CODE_SPENT = "The code no longer works. The coach must sign in to unlock the tablet."


@transaction.atomic
def kiosk_unlock_with_code(*, kiosk: Kiosk, code: str):
    """The coach's short code, on an ended kiosk: returns the coach to sign back in. Wrong
    codes count; after UNLOCK_TRIES, or UNLOCK_WINDOW after the end, only the sign-in works."""
    kiosk = (
        Kiosk.objects.select_for_update().select_related("patient", "started_by").get(pk=kiosk.pk)
    )
    if kiosk.ended_at is None:
        raise ValidationError({"code": "The tablet is not locked."})
    usable = (
        kiosk.unlocked_at is None
        and kiosk.unlock_attempts < UNLOCK_TRIES
        and timezone.now() < kiosk.ended_at + UNLOCK_WINDOW
        and kiosk.started_by.is_active
    )
    if not usable:
        raise ValidationError({"code": CODE_SPENT})
    if not check_password(code.strip(), kiosk.unlock_code_hash):
        kiosk.unlock_attempts += 1
        kiosk.save(update_fields=["unlock_attempts"])
        _audit(kiosk, KioskEvent.WRONG_CODE, attempts=kiosk.unlock_attempts)
        # The count must survive the refusal, so this transaction commits; the caller shows
        # the message.
        return None
    kiosk.unlocked_at = timezone.now()
    kiosk.save(update_fields=["unlocked_at"])
    _audit(kiosk, KioskEvent.UNLOCKED, actor=kiosk.started_by, by="code")
    return kiosk.started_by


@transaction.atomic
def kiosk_unlock_by_sign_in(*, kiosk: Kiosk, actor) -> None:
    """Someone signed in on the locked tablet: the kiosk is over for good."""
    kiosk = Kiosk.objects.select_for_update().select_related("patient").get(pk=kiosk.pk)
    now = timezone.now()
    if kiosk.ended_at is None:
        _end(kiosk, reason=KioskEnd.IDLE if idle(kiosk, now=now) else KioskEnd.HANDED_BACK, at=now)
    if kiosk.unlocked_at is None:
        kiosk.unlocked_at = now
        kiosk.save(update_fields=["unlocked_at"])
        _audit(kiosk, KioskEvent.UNLOCKED, actor=actor, by="sign-in")


def end_idle_kiosks() -> int:
    """Beat job: end the kiosks left idle, so a tablet abandoned in a room is locked in the
    record (audited) even if nobody touches it again. Returns how many it ended."""
    cutoff = timezone.now() - IDLE
    ended = 0
    for kiosk in Kiosk.objects.filter(ended_at__isnull=True, last_seen_at__lte=cutoff):
        ended += kiosk_lock_if_idle(kiosk=kiosk)
    return ended
