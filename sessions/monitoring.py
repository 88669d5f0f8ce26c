"""The dosing day's rules, pure (no database): what is plausible for a vital sign, when a
reading asks for attention, which observation points a protocol's dosing step has, and
whether a patient may leave.

`sessions.services` reads the rows and calls these; `alliance` reads the same answers for
readiness and the dashboard, so "out of range" means one thing everywhere.
"""

import datetime
from dataclasses import dataclass, field
from decimal import Decimal

# Plausibility: a value outside these is a typing mistake (1200 mmHg, SpO2 of 9), not a
# clinical finding, and is refused. Wide on purpose: a real but alarming reading must save.
PLAUSIBLE = {
    "systolic": (50, 280, "mmHg"),
    "diastolic": (20, 180, "mmHg"),
    "heart_rate": (20, 250, "beats/min"),
    "spo2": (50, 100, "%"),
    "respiratory_rate": (4, 60, "breaths/min"),
    "temperature_c": (Decimal("30.0"), Decimal("43.0"), "°C"),
}
LABELS = {
    "systolic": "Systolic blood pressure",
    "diastolic": "Diastolic blood pressure",
    "heart_rate": "Heart rate",
    "spo2": "SpO₂",
    "respiratory_rate": "Respiratory rate",
    "temperature_c": "Temperature",
}
REQUIRED = ("systolic", "diastolic", "heart_rate", "spo2")


def plausibility_errors(values: dict) -> dict[str, str]:
    """{field: message} for missing required values and values outside the plausible range;
    the message names the range so the person at the bedside sees what went wrong."""
    errors = {}
    for name, (low, high, unit) in PLAUSIBLE.items():
        value = values.get(name)
        if value is None:
            if name in REQUIRED:
                errors[name] = f"Enter the {LABELS[name].lower()} ({unit})."
            continue
        if not low <= value <= high:
            errors[name] = (
                f"{value} {unit} is not a plausible {LABELS[name].lower()}: enter a value "
                f"between {low} and {high} {unit}. Check for a typing mistake."
            )
    if (
        "systolic" not in errors
        and "diastolic" not in errors
        and values.get("systolic") is not None
        and values.get("diastolic") is not None
        and values["diastolic"] >= values["systolic"]
    ):
        errors["diastolic"] = "The diastolic pressure must be lower than the systolic."
    return errors


@dataclass(frozen=True)
class Limits:
    """Alert thresholds for one program (a `VitalLimits` row, else its modality's defaults)."""

    pre_dose_systolic_above: int
    pre_dose_diastolic_above: int
    systolic_above: int
    diastolic_above: int
    heart_rate_above: int
    heart_rate_below: int
    spo2_below: int
    source: str = ""


# Defaults per modality, each with its source. The pre-dose limit asks the prescriber to
# confirm before dosing; the others apply to every reading and to the discharge check.
SPRAVATO = (
    "Pre-dose 140/90: esketamine (Spravato) prescribing information, section 5 (blood pressure "
    "above 140/90 before dosing: weigh the risk; monitor at about 40 minutes and until stable). "
)
DEFAULT_LIMITS = {
    "ketamine": Limits(
        pre_dose_systolic_above=140,
        pre_dose_diastolic_above=90,
        systolic_above=180,
        diastolic_above=110,
        heart_rate_above=120,
        heart_rate_below=50,
        spo2_below=92,
        source=SPRAVATO
        + "During and after: 180/110 is the hypertensive-crisis threshold of the ACC/AHA 2017 "
        "guideline; SpO2 below 92% and heart rate outside 50-120 are common sedation-"
        "monitoring alert settings (clinic defaults, change them per program).",
    ),
    "psilocybin": Limits(
        pre_dose_systolic_above=140,
        pre_dose_diastolic_above=90,
        systolic_above=200,
        diastolic_above=110,
        heart_rate_above=130,
        heart_rate_below=50,
        spo2_below=92,
        source="Psilocybin trials (Johns Hopkins protocols, e.g. Davis et al. 2021) excluded "
        "blood pressure above 140/90 at screening and measured blood pressure and heart rate "
        "at 30-60 minute intervals, acting on readings above 200/110. Heart rate and SpO2: "
        "clinic defaults.",
    ),
    "mdma": Limits(
        pre_dose_systolic_above=140,
        pre_dose_diastolic_above=90,
        systolic_above=160,
        diastolic_above=110,
        heart_rate_above=130,
        heart_rate_below=50,
        spo2_below=92,
        source="MDMA phase 3 protocol (MAPP1; Mitchell et al. 2021): blood pressure and pulse "
        "at set intervals, with 160/110 prompting further monitoring. SpO2: clinic default.",
    ),
}
DEFAULT_LIMITS["other"] = DEFAULT_LIMITS["ketamine"]


@dataclass(frozen=True)
class Reading:
    measured_at: datetime.datetime
    systolic: int
    diastolic: int
    heart_rate: int
    spo2: int
    pre_dose: bool = False
    point_label: str = ""


def alerts(reading: Reading, limits: Limits) -> list[str]:
    """What is out of range, in words ("Blood pressure 152/94 mmHg is above 140/90 before the
    dose"); empty when the reading is within every limit."""
    found = []
    bp = f"{reading.systolic}/{reading.diastolic} mmHg"
    if reading.pre_dose and (
        reading.systolic > limits.pre_dose_systolic_above
        or reading.diastolic > limits.pre_dose_diastolic_above
    ):
        found.append(
            f"Blood pressure {bp} is above {limits.pre_dose_systolic_above}/"
            f"{limits.pre_dose_diastolic_above} before the dose: the prescriber must confirm "
            "before dosing"
        )
    elif reading.systolic > limits.systolic_above or reading.diastolic > limits.diastolic_above:
        found.append(
            f"Blood pressure {bp} is above {limits.systolic_above}/{limits.diastolic_above}"
        )
    if reading.heart_rate > limits.heart_rate_above:
        found.append(f"Heart rate {reading.heart_rate}/min is above {limits.heart_rate_above}/min")
    elif reading.heart_rate < limits.heart_rate_below:
        found.append(f"Heart rate {reading.heart_rate}/min is below {limits.heart_rate_below}/min")
    if reading.spo2 < limits.spo2_below:
        found.append(f"SpO₂ {reading.spo2}% is below {limits.spo2_below}%")
    return found


# --- observation points ------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One observation point of a dosing step: `after_dose_minutes` None is before the dose;
    `discharge` marks the check before the patient leaves."""

    code: str
    label: str
    after_dose_minutes: int | None = None
    discharge: bool = False
    instruments: tuple[str, ...] = ()


@dataclass(frozen=True)
class Schedule:
    observation_minutes: int
    points: tuple[Point, ...]
    source: str = ""

    def point(self, code: str) -> Point | None:
        return next((p for p in self.points if p.code == code), None)


# When a dosing has no protocol step (booked by hand) or its step says nothing: the
# esketamine REMS minimum, the strictest of the shipped schedules.
FALLBACK = {
    "observation_minutes": 120,
    "source": "Esketamine (Spravato) REMS: blood pressure before the dose and about 40 minutes "
    "after, observation for at least 2 hours.",
    "points": [
        {"code": "pre_dose", "label": "Before the dose", "after_dose_minutes": None},
        {"code": "plus_40", "label": "+40 min", "after_dose_minutes": 40},
        {"code": "plus_120", "label": "+2 h", "after_dose_minutes": 120},
        {"code": "pre_discharge", "label": "Before discharge", "discharge": True},
    ],
}


def schedule_from(data: dict | None) -> Schedule:
    data = data or FALLBACK
    return Schedule(
        observation_minutes=int(data["observation_minutes"]),
        source=data.get("source", ""),
        points=tuple(
            Point(
                code=p["code"],
                label=p["label"],
                after_dose_minutes=p.get("after_dose_minutes"),
                discharge=bool(p.get("discharge", False)),
                instruments=tuple(p.get("instruments", ())),
            )
            for p in data["points"]
        ),
    )


def schedule_errors(data: dict) -> list[str]:
    """What is wrong with a protocol file's `monitoring` block (checked when loading)."""
    problems = []
    if not isinstance(data.get("observation_minutes"), int) or data["observation_minutes"] < 1:
        problems.append("observation_minutes must be a positive whole number")
    if not data.get("source"):
        problems.append("say where the schedule comes from (source)")
    codes = [p.get("code") for p in data.get("points", [])]
    if not codes or len(set(codes)) != len(codes) or not all(codes):
        problems.append("points need unique codes")
    return problems


# --- discharge ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DischargeFacts:
    now: datetime.datetime
    dose_at: datetime.datetime | None
    observation_minutes: int
    last_reading: Reading | None
    limits: Limits
    sedation_resolved: bool
    escort_confirmed: bool
    last_sedation: str = ""  # e.g. "MOAA/S 5 at 11:02", shown beside the answer
    open_serious_events: list[str] = field(default_factory=list)


def discharge_problems(facts: DischargeFacts) -> list[str]:
    """Why the patient may not leave yet, in words; empty when every condition holds."""
    problems = []
    if facts.dose_at is None:
        problems.append("The time of the dose is not recorded (dosing details, actual start).")
    else:
        ready_at = facts.dose_at + datetime.timedelta(minutes=facts.observation_minutes)
        if facts.now < ready_at:
            left = int((ready_at - facts.now).total_seconds() // 60) + 1
            problems.append(
                f"The minimum observation time of {facts.observation_minutes} minutes after the "
                f"dose has not passed ({left} min to go)."
            )
    if facts.last_reading is None:
        problems.append("No vital signs are recorded.")
    else:
        out = alerts(Reading(**{**facts.last_reading.__dict__, "pre_dose": False}), facts.limits)
        if out:
            problems.append("The last vital signs are out of range: " + "; ".join(out) + ".")
        elif facts.dose_at is not None and facts.last_reading.measured_at < facts.dose_at:
            problems.append("No vital signs were taken after the dose.")
    if not facts.sedation_resolved:
        problems.append("Sedation has not resolved.")
    if not facts.escort_confirmed:
        problems.append("No escort or transport home is confirmed.")
    return problems
