"""The flag rules (DESIGN §5) as pure functions over one patient's measurements.

No Django here: the service reads the database into these dataclasses, calls `evaluate`, and
writes the result. The same input always gives the same decisions, which is what makes the
recompute task idempotent and safe to run out of order.
"""

import datetime
from dataclasses import dataclass, field
from enum import StrEnum

from . import bands


class Kind(StrEnum):
    WEAK_BOND = "weak_bond"
    BOND_DROP = "bond_drop"
    ALLIANCE_MISSING = "alliance_missing"
    LOW_ALLIANCE = "low_alliance"
    SAFETY = "safety"
    SAFETY_UNANSWERED = "safety_unanswered"
    OFF_TRACK = "off_track"
    ADVERSE_EVENT = "serious_adverse_event"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    URGENT = "urgent"


@dataclass(frozen=True)
class AlliancePoint:
    """One WAI-SR rating: item means (1-5) of the total and each subscale."""

    response_id: int
    at: datetime.datetime
    bond: float | None
    total: float | None
    session_id: int | None = None
    session_kind: str = ""
    session_label: str = ""
    step_id: int | None = None  # the protocol step of the rating's session
    step_order: int | None = None


@dataclass(frozen=True)
class StepBand:
    """Earlier patients' bond means at one protocol step (the patient's own left out): a
    tuple, or a sweep's shared `bands.Others`."""

    step_id: int
    label: str
    values: "tuple[float, ...] | bands.Others"


@dataclass(frozen=True)
class SrsPoint:
    response_id: int
    at: datetime.datetime
    total: float
    session_id: int | None = None
    session_label: str = ""


@dataclass(frozen=True)
class SafetyHit:
    response_id: int
    at: datetime.datetime
    instrument: str
    item: int
    value: float
    urgent: bool


@dataclass(frozen=True)
class SafetyGap:
    """A safety item (PHQ-9 item 9, ...) left unanswered in a response that was saved."""

    response_id: int
    at: datetime.datetime
    instrument: str
    item: int
    total_given: bool


@dataclass(frozen=True)
class SeriousEvent:
    """A serious adverse event not yet closed (no resolution date)."""

    event_id: int
    public_id: str
    onset_at: datetime.datetime
    grade: str
    description: str
    criteria: tuple[str, ...]
    dosing_session_id: int | None = None


@dataclass(frozen=True)
class Dosing:
    session_id: int
    start: datetime.datetime


@dataclass(frozen=True)
class Thresholds:
    """Per-program settings: every field is a `FlagRule` column of the same name, and these
    defaults (DESIGN §5) are the only place the default values are written."""

    weak_bond_below: float = 3.5
    weak_bond_days_before_dosing: int = 14
    percentile: int = 20
    percentile_min_ratings: int = 30
    bond_drop_rci: float = 0.5
    missing_hours_before_dosing: int = 72
    srs_below: float = 36.0
    srs_drop: float = 1.0
    wai_total_below: float = 3.5
    off_track_percentile: int = 10
    band_min_patients: int = 20


@dataclass(frozen=True)
class Facts:
    now: datetime.datetime
    alliance: list[AlliancePoint] = field(default_factory=list)
    srs: list[SrsPoint] = field(default_factory=list)
    safety: list[SafetyHit] = field(default_factory=list)
    safety_unanswered: list[SafetyGap] = field(default_factory=list)
    dosings: list[Dosing] = field(default_factory=list)  # scheduled, not cancelled
    preparations: list[datetime.datetime] = field(default_factory=list)  # completed, start times
    clinic_bond_percentile: float | None = None  # the clinic's Nth percentile of bond means
    clinic_bond_ratings: int = 0
    step_bands: dict[int, StepBand] = field(default_factory=dict)  # step id -> band
    serious_events: list[SeriousEvent] = field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    """A flag that should be open, with its evidence (see `basis`)."""

    kind: Kind
    severity: Severity
    dosing_session_id: int | None
    evidence: dict

    @property
    def key(self) -> tuple[str, int | None]:
        return flag_key(self.kind, self.dosing_session_id)


# Kinds raised once per patient however many dosings are ahead: one low rating before a series
# of dosings is one flag to handle. Its dosing is the nearest one, and moves on when that has
# passed; a weak bond's evidence lists every dosing in its window ("dosings"), and each of
# their readiness still counts it (bond drops and low alliance count for every dosing anyway).
PER_PATIENT = frozenset({Kind.WEAK_BOND, Kind.BOND_DROP, Kind.LOW_ALLIANCE})


def flag_key(kind: str, dosing_session_id: int | None) -> tuple[str, int | None]:
    """Which open flag a decision is: per kind and dosing, or per kind for PER_PATIENT kinds
    (so the flag stays the same one when its nearest dosing has passed)."""
    return (str(kind), None if kind in PER_PATIENT else dosing_session_id)


def _iso(moment: datetime.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _upcoming(facts: Facts, within: datetime.timedelta) -> list[Dosing]:
    return sorted(
        (d for d in facts.dosings if facts.now <= d.start <= facts.now + within),
        key=lambda d: d.start,
    )


def _next_dosing(facts: Facts) -> Dosing | None:
    future = sorted((d for d in facts.dosings if d.start >= facts.now), key=lambda d: d.start)
    return future[0] if future else None


def _rated(points, attr):
    return sorted((p for p in points if getattr(p, attr) is not None), key=lambda p: p.at)


def weak_bond(facts: Facts, t: Thresholds) -> list[Decision]:
    window = datetime.timedelta(days=t.weak_bond_days_before_dosing)
    ratings = [p for p in _rated(facts.alliance, "bond") if p.at <= facts.now]
    if not ratings:
        return []
    latest = ratings[-1]
    percentile_applies = (
        facts.clinic_bond_percentile is not None
        and facts.clinic_bond_ratings >= t.percentile_min_ratings
    )
    below_fixed = latest.bond < t.weak_bond_below
    below_percentile = percentile_applies and latest.bond < facts.clinic_bond_percentile
    if not (below_fixed or below_percentile):
        return []
    severity = Severity.HIGH if latest.bond < t.weak_bond_below - 0.5 else Severity.MEDIUM
    upcoming = _upcoming(facts, window)
    if not upcoming:
        return []
    nearest = upcoming[0]
    return [
        Decision(
            Kind.WEAK_BOND,
            severity,
            nearest.session_id,
            {
                "bond": latest.bond,
                "rated_at": _iso(latest.at),
                "response_id": latest.response_id,
                "session_label": latest.session_label,
                "threshold": t.weak_bond_below,
                "clinic_percentile": facts.clinic_bond_percentile if percentile_applies else None,
                "percentile": t.percentile,
                "dosing_at": _iso(nearest.start),
                "dosings": [{"session_id": d.session_id, "at": _iso(d.start)} for d in upcoming],
            },
        )
    ]


def bond_drop(facts: Facts, t: Thresholds) -> list[Decision]:
    ratings = [p for p in _rated(facts.alliance, "bond") if p.at <= facts.now]
    if len(ratings) < 2:
        return []
    before, after = ratings[-2], ratings[-1]
    fall = round(before.bond - after.bond, 2)
    if fall <= t.bond_drop_rci:
        return []
    dosing = _next_dosing(facts)
    return [
        Decision(
            Kind.BOND_DROP,
            Severity.MEDIUM,
            dosing.session_id if dosing else None,
            {
                "bond_before": before.bond,
                "bond_after": after.bond,
                "fall": fall,
                "rci": t.bond_drop_rci,
                "before_at": _iso(before.at),
                "after_at": _iso(after.at),
                "response_ids": [before.response_id, after.response_id],
                "dosing_at": _iso(dosing.start) if dosing else None,
            },
        )
    ]


def alliance_missing(facts: Facts, t: Thresholds) -> list[Decision]:
    window = datetime.timedelta(hours=t.missing_hours_before_dosing)
    decisions = []
    for dosing in _upcoming(facts, window):
        preparations = [p for p in facts.preparations if p < dosing.start]
        last_preparation = max(preparations) if preparations else None
        since = [
            p
            for p in facts.alliance
            if p.at <= facts.now and (last_preparation is None or p.at >= last_preparation)
        ]
        if since:
            continue
        decisions.append(
            Decision(
                Kind.ALLIANCE_MISSING,
                Severity.HIGH,
                dosing.session_id,
                {
                    "last_preparation_at": _iso(last_preparation),
                    "dosing_at": _iso(dosing.start),
                    "hours": t.missing_hours_before_dosing,
                },
            )
        )
    return decisions


def low_alliance(facts: Facts, t: Thresholds) -> list[Decision]:
    reasons = []
    srs = sorted((p for p in facts.srs if p.at <= facts.now), key=lambda p: p.at)
    if srs:
        latest = srs[-1]
        if latest.total < t.srs_below:
            reasons.append(
                {
                    "measure": "srs",
                    "value": latest.total,
                    "threshold": t.srs_below,
                    "rated_at": _iso(latest.at),
                    "response_id": latest.response_id,
                    "session_label": latest.session_label,
                }
            )
        if len(srs) >= 2 and srs[-2].total - latest.total >= t.srs_drop:
            reasons.append(
                {
                    "measure": "srs_drop",
                    "value": latest.total,
                    "previous": srs[-2].total,
                    "threshold": t.srs_drop,
                    "rated_at": _iso(latest.at),
                    "response_id": latest.response_id,
                    "session_label": latest.session_label,
                }
            )
    wai = [p for p in _rated(facts.alliance, "total") if p.at <= facts.now]
    if wai and wai[-1].total < t.wai_total_below:
        reasons.append(
            {
                "measure": "wai_total",
                "value": wai[-1].total,
                "threshold": t.wai_total_below,
                "rated_at": _iso(wai[-1].at),
                "response_id": wai[-1].response_id,
                "session_label": wai[-1].session_label,
            }
        )
    if not reasons:
        return []
    dosing = _next_dosing(facts)
    return [
        Decision(
            Kind.LOW_ALLIANCE,
            Severity.MEDIUM,
            dosing.session_id if dosing else None,
            {"reasons": reasons, "dosing_at": _iso(dosing.start) if dosing else None},
        )
    ]


def safety(facts: Facts, t: Thresholds) -> list[Decision]:
    if not facts.safety:
        return []
    hits = sorted(facts.safety, key=lambda h: (h.at, h.response_id, h.item))
    return [
        Decision(
            Kind.SAFETY,
            Severity.URGENT,
            None,
            {
                "hits": [
                    {
                        "instrument": h.instrument,
                        "item": h.item,
                        "value": h.value,
                        "urgent": h.urgent,
                        "at": _iso(h.at),
                        "response_id": h.response_id,
                    }
                    for h in hits
                ]
            },
        )
    ]


def safety_unanswered(facts: Facts, t: Thresholds) -> list[Decision]:
    """A skipped self-harm item is not a "no": someone must ask the patient."""
    if not facts.safety_unanswered:
        return []
    gaps = sorted(facts.safety_unanswered, key=lambda g: (g.at, g.response_id, g.item))
    return [
        Decision(
            Kind.SAFETY_UNANSWERED,
            Severity.HIGH,
            None,
            {
                "gaps": [
                    {
                        "instrument": g.instrument,
                        "item": g.item,
                        "total_given": g.total_given,
                        "at": _iso(g.at),
                        "response_id": g.response_id,
                    }
                    for g in gaps
                ]
            },
        )
    ]


def _step_ratings(facts: Facts) -> list[tuple[int, float, AlliancePoint]]:
    """(step id, the patient's bond mean at that step, its latest rating) in step order; a
    patient rated twice at one step is taken at the mean of those ratings."""
    by_step: dict[int, list[AlliancePoint]] = {}
    for point in _rated(facts.alliance, "bond"):
        if point.step_id is not None and point.at <= facts.now:
            by_step.setdefault(point.step_id, []).append(point)
    steps = sorted(by_step.values(), key=lambda points: (points[-1].step_order or 0, points[-1].at))
    return [
        (points[-1].step_id, round(sum(p.bond for p in points) / len(points), 4), points[-1])
        for points in steps
    ]


def off_track(facts: Facts, t: Thresholds) -> list[Decision]:
    """The bond at the patient's latest rated step is below the program's percentile (10th)
    of earlier patients at that step: only where at least `band_min_patients` were rated
    there. Severity is high when the previous step was still at or above the 25th."""
    rated = _step_ratings(facts)
    if not rated:
        return []
    step_id, bond, point = rated[-1]
    band = facts.step_bands.get(step_id)
    if band is None or len(band.values) < t.band_min_patients:
        return []
    cut = bands.percentile(band.values, t.off_track_percentile)
    if not bond < cut:
        return []
    rank = bands.rank(band.values, bond)
    fell_from = None
    if len(rated) >= 2:
        previous_step, previous_bond, previous_point = rated[-2]
        previous_band = facts.step_bands.get(previous_step)
        if (
            previous_band is not None
            and len(previous_band.values) >= t.band_min_patients
            and previous_bond >= bands.percentile(previous_band.values, 25)
        ):
            fell_from = {
                "bond": previous_bond,
                "step": previous_band.label,
                "percentile_rank": bands.rank(previous_band.values, previous_bond),
                "response_id": previous_point.response_id,
            }
    dosing = _next_dosing(facts)
    return [
        Decision(
            Kind.OFF_TRACK,
            Severity.HIGH if fell_from else Severity.MEDIUM,
            dosing.session_id if dosing else None,
            {
                "bond": bond,
                "step": band.label,
                "step_id": step_id,
                "percentile_rank": rank,
                "n": len(band.values),
                "percentile": t.off_track_percentile,
                "cut": round(cut, 4),
                "band_source": "clinic",
                "rated_at": _iso(point.at),
                "response_id": point.response_id,
                "fell_from": fell_from,
                "dosing_at": _iso(dosing.start) if dosing else None,
            },
        )
    ]


def serious_adverse_event(facts: Facts, t: Thresholds) -> list[Decision]:
    """A serious adverse event stays on the clinicians' worklist until it is closed; one
    flag per dosing it happened at (or one for events between sessions)."""
    by_dosing: dict[int | None, list[SeriousEvent]] = {}
    for event in sorted(facts.serious_events, key=lambda e: (e.onset_at, e.event_id)):
        by_dosing.setdefault(event.dosing_session_id, []).append(event)
    return [
        Decision(
            Kind.ADVERSE_EVENT,
            Severity.URGENT,
            dosing_id,
            {
                "events": [
                    {
                        "event_id": e.event_id,
                        "public_id": e.public_id,
                        "onset_at": _iso(e.onset_at),
                        "grade": e.grade,
                        "description": e.description,
                        "criteria": list(e.criteria),
                    }
                    for e in events
                ]
            },
        )
        for dosing_id, events in by_dosing.items()
    ]


RULES = (
    weak_bond,
    bond_drop,
    alliance_missing,
    low_alliance,
    safety,
    safety_unanswered,
    off_track,
    serious_adverse_event,
)

# A safety flag stays until a person resolves it; the others clear when the condition does
# (a skipped safety item, once the instrument is answered again).
AUTO_RESOLVING = frozenset(
    {
        Kind.WEAK_BOND,
        Kind.BOND_DROP,
        Kind.ALLIANCE_MISSING,
        Kind.LOW_ALLIANCE,
        Kind.SAFETY_UNANSWERED,
        Kind.OFF_TRACK,
        Kind.ADVERSE_EVENT,  # clears when the event is closed
    }
)
# Resolving these is final: the person has spoken with the patient. Resolving the others
# records what was done, while the condition (a weak bond) may still hold.
SETTLED_BY_A_PERSON = frozenset({Kind.SAFETY, Kind.SAFETY_UNANSWERED})


def basis(kind: str, evidence: dict) -> tuple:
    """The very condition a flag rests on: which ratings or answers, before which dosing.

    Thresholds and the clinic's percentile are left out, so a person who resolved a flag has
    dealt with that condition until a newer rating (a new basis) says otherwise.
    """
    if kind == Kind.WEAK_BOND:
        # The rating alone: a person who dealt with it has dealt with it for the whole series.
        return (evidence.get("response_id"),)
    if kind == Kind.BOND_DROP:
        return tuple(evidence.get("response_ids", []))
    if kind == Kind.ALLIANCE_MISSING:
        return (evidence.get("last_preparation_at"), evidence.get("dosing_at"))
    if kind == Kind.OFF_TRACK:
        return (evidence.get("response_id"), evidence.get("step_id"), evidence.get("dosing_at"))
    if kind == Kind.LOW_ALLIANCE:
        return tuple(sorted((r["measure"], r["response_id"]) for r in evidence.get("reasons", [])))
    if kind == Kind.ADVERSE_EVENT:
        return tuple(sorted(e["event_id"] for e in evidence.get("events", [])))
    entries = evidence.get("hits") or evidence.get("gaps") or []
    return tuple(sorted({e["response_id"] for e in entries}))


def evaluate(facts: Facts, thresholds: Thresholds) -> list[Decision]:
    """Every flag that should be open now, at most one per `flag_key`."""
    decisions: dict[tuple, Decision] = {}
    for rule in RULES:
        for decision in rule(facts, thresholds):
            decisions.setdefault(decision.key, decision)
    return list(decisions.values())
