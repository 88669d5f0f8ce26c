"""Synthetic questionnaire answers for the demo clinic (never used for real patients)."""

import datetime

from django.utils import timezone

from sessions.models import Session

from . import services
from .models import Response


def _clip(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def _wai(rng, bond: float, other: float) -> dict[int, int]:
    return {
        n: int(round(_clip(rng.gauss(bond if n in (3, 5, 7, 9) else other, 0.45), 1, 5)))
        for n in range(1, 13)
    }


def _srs(rng, level: float) -> dict[int, float]:
    return {n: round(_clip(rng.gauss(level, 0.5), 0, 10), 1) for n in range(1, 5)}


def _phq9(rng, severity: float) -> dict[int, int]:
    answers = {n: int(round(_clip(rng.gauss(severity, 0.6), 0, 3))) for n in range(1, 11)}
    answers[9] = 1 if rng.random() < 0.04 else 0
    return answers


def _qids(rng, severity: float) -> dict[int, int]:
    answers = {n: int(round(_clip(rng.gauss(severity, 0.6), 0, 3))) for n in range(1, 17)}
    answers[12] = 1 if rng.random() < 0.04 else 0  # thoughts of death: rare in the demo
    return answers


def seed_responses(*, patient, rng, actor) -> int:
    """Answers for every logged session that had questionnaires due, once per session.

    Most patients' bond rises through preparation; about one in six stays low, so the demo
    shows weak_bond flags before their dosing.
    """
    weak = rng.random() < 0.17
    bond, other = (2.6, 3.2) if weak else (3.3, 3.7)
    depression = rng.uniform(1.4, 2.2)
    sessions = (
        Session.objects.filter(
            attendances__patient=patient,
            status=Session.Status.COMPLETED,
            protocol_step__isnull=False,
        )
        .select_related("protocol_step")
        .order_by("scheduled_start")
    )
    created = 0
    for session in sessions:
        due = session.protocol_step.instruments_due
        if Response.objects.filter(patient=patient, session=session).exists():
            continue
        when = session.scheduled_end + datetime.timedelta(minutes=10)
        if when > timezone.now():
            continue
        answers = {}
        if "wai-sr" in due:
            answers["wai-sr"] = _wai(rng, bond, other)
            bond = _clip(bond + (0.05 if weak else rng.uniform(0.15, 0.35)), 1, 5)
            other = _clip(other + 0.15, 1, 5)
        if "srs" in due:
            answers["srs"] = _srs(rng, 7.8 if weak else 9.4)
        if "phq-9" in due:
            answers["phq-9"] = _phq9(rng, depression)
        if "qids-sr-16" in due:
            answers["qids-sr-16"] = _qids(rng, depression)
        for code, item_answers in answers.items():
            services.response_record(
                actor=actor,
                patient=patient,
                version=services.latest_version(code),
                answers=item_answers,
                administered_at=when,
                session=session,
                allow_incomplete=True,
            )
            created += 1
    return created
