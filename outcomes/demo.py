"""Synthetic questionnaire answers for the demo clinic (never used for real patients).

Each patient gets a stable "story" drawn from their record number and the seed: most have a
bond that rises through preparation, about one in six stays low (so the demo shows weak_bond
flags before their dosing). Depression scores start moderate and fall after dosing, more for
a strong alliance; the dosing-day measures (MEQ-30, PIQ, EBI) run higher with a stronger
alliance, as in Levin et al. 2024. A few recent questionnaires are left unanswered so the
caseload shows overdue badges. Re-running adds nothing: the story is the same, and a session
that already has answers is skipped.
"""

import datetime
import random

from django.utils import timezone

from sessions.models import Attendance, Session, SessionKind

from . import services
from .models import Response

# Recently due questionnaires a patient has not returned yet, for the overdue badge.
UNRETURNED = 0.12
RECENT = datetime.timedelta(days=6)


def _clip(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def _items(rng, count: int, level: float, low: float, high: float, spread: float, step=1):
    # `_clip` and the draw inlined, one comprehension per step: a 10,000-patient seed draws
    # two million answers, and the calls were most of the drawing's time. Same draws, in order.
    gauss = rng.gauss
    if step == 1:
        return {n: round(max(low, min(high, gauss(level, spread)))) for n in range(1, count + 1)}
    return {n: round(max(low, min(high, gauss(level, spread))), 1) for n in range(1, count + 1)}


class _Story:
    """One patient's synthetic course, advanced session by session."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.weak = rng.random() < 0.17
        self.bond, self.other = (2.6, 3.1) if self.weak else (3.3, 3.7)
        self.depression = rng.uniform(1.5, 2.2)  # item level on 0-3 scales

    @property
    def alliance(self) -> float:
        return (self.bond + self.other) / 2

    def wai_sr(self) -> dict:
        gauss, bond, other = self.rng.gauss, self.bond, self.other
        answers = {
            n: round(max(1, min(5, gauss(bond if n in (3, 5, 7, 9) else other, 0.45))))
            for n in range(1, 13)
        }
        rise = 0.05 if self.weak else self.rng.uniform(0.15, 0.35)
        self.bond = _clip(self.bond + rise, 1, 5)
        self.other = _clip(self.other + rise * 0.6, 1, 5)
        return answers

    def srs(self) -> dict:
        # About 8 per line (total 32, below the cut-off) for a weak alliance, about 9.5 for a
        # good one; small noise, so a drop of a point between sessions stays uncommon.
        level = 8.0 + 1.5 * _clip((self.alliance - 2.85) / 1.05, 0, 1)
        return _items(self.rng, 4, level, 0, 10, 0.25, step=0.1)

    def phq9(self) -> dict:
        answers = _items(self.rng, 9, self.depression, 0, 3, 0.6)
        answers[9] = 1 if self.rng.random() < 0.03 else 0
        answers[10] = int(round(_clip(self.depression - 0.5, 0, 3)))
        return answers

    def gad7(self) -> dict:
        return _items(self.rng, 7, self.depression * 0.85, 0, 3, 0.6)

    def qids(self) -> dict:
        answers = _items(self.rng, 16, self.depression * 0.9, 0, 3, 0.6)
        answers[12] = 1 if self.rng.random() < 0.03 else 0  # thoughts of death: rare here
        return answers

    def grid_hamd(self) -> dict:
        narrow = (4, 5, 6, 12, 13, 14, 16, 17)  # items scored 0-2
        answers = {}
        for n in range(1, 18):
            top = 2 if n in narrow else 4
            level = self.depression * (0.6 if n in narrow else 1.1)
            answers[n] = int(round(_clip(self.rng.gauss(level, 0.6), 0, top)))
        answers[3] = 0
        return answers

    def after_dosing(self) -> None:
        """Depression falls after a dosing, more with a strong alliance."""
        drop = 0.25 + 0.35 * (self.alliance - 2.5) + self.rng.gauss(0, 0.15)
        self.depression = _clip(self.depression - max(drop, 0.05), 0.2, 3)

    def meq30(self) -> dict:
        return _items(self.rng, 30, 1.2 + 0.6 * self.alliance, 0, 5, 0.8)

    def piq(self) -> dict:
        return _items(self.rng, 23, 0.8 + 0.6 * self.alliance, 0, 5, 0.8)

    def ebi(self) -> dict:
        return _items(self.rng, 6, 20 + 12 * self.alliance, 0, 100, 12)


ANSWERS = {
    "wai-sr": _Story.wai_sr,
    "srs": _Story.srs,
    "phq-9": _Story.phq9,
    "gad-7": _Story.gad7,
    "qids-sr-16": _Story.qids,
    "grid-hamd-17": _Story.grid_hamd,
    "meq-30": _Story.meq30,
    "piq": _Story.piq,
    "ebi": _Story.ebi,
}


def planned_responses(*, record_number: str, sessions, seed: int, now, answered_sessions=()):
    """The answers a patient gives, as (session, instrument code, answers, administered at),
    for `sessions`: their logged sessions with questionnaires due, attended, in time order.
    Pure, so the service seeding below and the demo's bulk seeding give the same answers."""
    story = _Story(random.Random(f"{seed}:{record_number}"))
    for session in sessions:
        due = [code for code in session.protocol_step.instruments_due if code in ANSWERS]
        # Draw every answer whether or not it is stored, so the story stays the same.
        drawn = {code: ANSWERS[code](story) for code in due}
        returned = {code: story.rng.random() >= UNRETURNED for code in due}
        if session.kind == SessionKind.DOSING:
            story.after_dosing()
        if session.pk in answered_sessions:
            continue
        when = session.scheduled_end + datetime.timedelta(minutes=10)
        if session.kind == SessionKind.DOSING:
            when = session.scheduled_end + datetime.timedelta(hours=18)  # the day after
        if when > now:
            continue
        for code, answers in drawn.items():
            if not returned[code] and now - session.scheduled_end < RECENT:
                continue  # not returned yet: shows as overdue on the caseload
            yield session, code, answers, when


def seed_responses(*, patient, actor, seed: int = 0) -> int:
    """Answers for every logged session of the patient that had questionnaires due."""
    sessions = (
        Session.objects.filter(
            attendances__patient=patient,
            attendances__status__in=Attendance.PRESENT,
            status=Session.Status.COMPLETED,
            protocol_step__isnull=False,
        )
        .select_related("protocol_step")
        .order_by("scheduled_start")
    )
    answered_sessions = set(
        Response.objects.filter(patient=patient, session__isnull=False).values_list(
            "session_id", flat=True
        )
    )
    created = 0
    for session, code, answers, when in planned_responses(
        record_number=patient.record_number,
        sessions=sessions,
        seed=seed,
        now=timezone.now(),
        answered_sessions=answered_sessions,
    ):
        services.response_record(
            actor=actor,
            patient=patient,
            version=services.latest_version(code),
            answers=answers,
            administered_at=when,
            session=session,
            allow_incomplete=True,
            announce=False,  # seed_demo recomputes every patient's flags itself
        )
        created += 1
    return created
