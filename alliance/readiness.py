"""Is this dosing ready? One answer, from everything that matters (DESIGN §5).

Pure: the selector `alliance.caseload.dosing_readiness` reads the facts of many dosings in a
fixed number of queries and calls `assess` for each, so the caseload badge, the program
dashboard, the dosing page and "Mark ready" all show the same answer.

Each risk has a `key` that names the very condition (which flag, which rating, which
session). A sign-off covers the risks it listed: a risk that appears afterwards puts the
dosing at risk again, however recently someone signed.
"""

import datetime
from dataclasses import dataclass, field
from enum import StrEnum


class State(StrEnum):
    READY = "ready"
    AT_RISK = "at risk"
    NOT_MEASURED = "not measured"
    CONFIRMED = "confirmed despite risks"


@dataclass(frozen=True)
class Risk:
    key: str
    text: str
    resolved: bool = False  # a flag a person resolved while its condition still holds


@dataclass(frozen=True)
class FlagFact:
    public_id: str
    kind: str
    label: str
    summary: str
    resolved_by: str = ""
    resolution_note: str = ""


@dataclass(frozen=True)
class SignOff:
    by: str
    at: datetime.datetime
    note: str
    risk_keys: frozenset[str]


@dataclass(frozen=True)
class DosingFacts:
    open_flags: list[FlagFact] = field(default_factory=list)
    resolved_flags_still_applying: list[FlagFact] = field(default_factory=list)
    latest_bond: float | None = None
    latest_bond_response_id: int | None = None
    latest_bond_at: datetime.datetime | None = None
    bond_threshold: float = 3.5
    clinic_percentile: int = 20
    clinic_percentile_value: float | None = None  # None until enough ratings exist
    preparations_done: int = 0
    preparations_required: int = 0
    unanswered_after_preparation: list[str] = field(default_factory=list)  # instrument names
    last_preparation_id: int | None = None
    last_preparation_label: str = ""
    facilitators: int = 0
    dose_recorded: bool = False
    logistics_due: bool = True  # facilitator and dose are expected from this point on
    sign_off: SignOff | None = None
    # The latest pre-dose vital signs, when out of the program's limits: (reading id,
    # when measured, what is out of range in words).
    pre_dose_vitals: tuple[int, datetime.datetime, list[str]] | None = None


@dataclass(frozen=True)
class Readiness:
    state: State
    risks: list[Risk]
    sign_off: SignOff | None = None

    @property
    def label(self) -> str:
        if self.state == State.AT_RISK and any(r.resolved for r in self.risks):
            return "At risk — resolved"
        return self.state.value.capitalize()

    @property
    def risk_keys(self) -> frozenset[str]:
        return frozenset(r.key for r in self.risks)


def _day(moment: datetime.datetime | None) -> str:
    return f"{moment:%-d %b}" if moment else ""


def risks(facts: DosingFacts) -> list[Risk]:
    found: list[Risk] = []
    for flag in facts.open_flags:
        found.append(Risk(f"flag:{flag.public_id}", f"Open flag: {flag.label}. {flag.summary}"))
    for flag in facts.resolved_flags_still_applying:
        found.append(
            Risk(
                f"resolved:{flag.public_id}",
                f"{flag.label}, resolved by {flag.resolved_by}: {flag.resolution_note}. "
                f"The condition still holds ({flag.summary}); only a newer rating clears it.",
                resolved=True,
            )
        )
    flagged_kinds = {f.kind for f in facts.open_flags + facts.resolved_flags_still_applying}
    if facts.latest_bond is None:
        found.append(Risk("no_bond", "No WAI-SR bond rating yet."))
    elif "weak_bond" not in flagged_kinds:
        # Flags look 14 days ahead; readiness answers for any dosing, however far off.
        rated = f"Latest bond {facts.latest_bond:g} (mean, {_day(facts.latest_bond_at)})"
        if facts.latest_bond < facts.bond_threshold:
            found.append(
                Risk(
                    f"bond_below:{facts.latest_bond_response_id}",
                    f"{rated} is below the program's threshold of {facts.bond_threshold:g}.",
                )
            )
        elif (
            facts.clinic_percentile_value is not None
            and facts.latest_bond < facts.clinic_percentile_value
        ):
            found.append(
                Risk(
                    f"bond_percentile:{facts.latest_bond_response_id}",
                    f"{rated} is below the clinic's {facts.clinic_percentile}th percentile "
                    f"({facts.clinic_percentile_value:.2f}).",
                )
            )
    if facts.preparations_done < facts.preparations_required:
        found.append(
            Risk(
                f"preparations:{facts.preparations_done}",
                f"Only {facts.preparations_done} of the protocol's "
                f"{facts.preparations_required} preparation sessions are completed.",
            )
        )
    if facts.unanswered_after_preparation:
        found.append(
            Risk(
                f"measures:{facts.last_preparation_id}:"
                + ",".join(sorted(facts.unanswered_after_preparation)),
                f"Not answered after {facts.last_preparation_label}: "
                + ", ".join(facts.unanswered_after_preparation)
                + ".",
            )
        )
    if facts.pre_dose_vitals is not None and facts.pre_dose_vitals[2]:
        reading_id, measured_at, alerts = facts.pre_dose_vitals
        found.append(
            Risk(
                f"vitals:{reading_id}",
                f"Pre-dose vital signs at {measured_at:%H:%M}: " + "; ".join(alerts) + ".",
            )
        )
    if facts.logistics_due:
        if not facts.facilitators:
            found.append(Risk("no_facilitator", "No facilitator is assigned."))
        if not facts.dose_recorded:
            found.append(Risk("no_dose", "No dose is recorded (substance, dose and route)."))
    return found


def assess(facts: DosingFacts) -> Readiness:
    found = risks(facts)
    if not found:
        return Readiness(State.READY, [], facts.sign_off)
    keys = frozenset(r.key for r in found)
    if facts.sign_off is not None and keys <= facts.sign_off.risk_keys:
        return Readiness(State.CONFIRMED, found, facts.sign_off)
    if keys == {"no_bond"}:
        return Readiness(State.NOT_MEASURED, found, facts.sign_off)
    return Readiness(State.AT_RISK, found, facts.sign_off)
