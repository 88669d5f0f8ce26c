"""Supervision: alliance and outcomes by coach (METHODS §2), honest about small numbers.

Per coach: patients and ratings, the mean bond at the last preparation, the share of dosings
that went ahead with an alliance flag open, response and remission at 4 weeks, each with a
95% interval; below `MIN_PATIENTS` a coach's cells say "not enough data". A multilevel model
(statsmodels' mixed linear model: ratings nested in patients nested in coaches) estimates
each coach's effect on the bond, shrunk toward the clinic mean, instead of ranking raw means.

A rating belongs to the coach it is about (`Response.about_coach`); without one, to each
facilitator of its session. Plain numbers and the model only: the funnel plot is drawn in
`charts.funnel_chart`.
"""

import datetime
import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from clinic.access import role_of, sees_all_patients
from clinic.models import CoachAssignment, Enrolment, Program
from clinic.roles import Role
from clinic.selectors import coaches as all_coaches
from outcomes.models import Score
from sessions.models import Attendance, Session, SessionKind

from . import reports
from .models import Flag

MIN_PATIENTS = 5
ALLIANCE_KINDS = (
    Flag.Kind.WEAK_BOND,
    Flag.Kind.BOND_DROP,
    Flag.Kind.ALLIANCE_MISSING,
    Flag.Kind.LOW_ALLIANCE,
    Flag.Kind.OFF_TRACK,
)
FOUR_WEEKS = reports.TIME_POINTS[0][1]


@dataclass(frozen=True)
class Rating:
    response_id: int
    patient_id: int
    coach_id: int
    bond: float
    step: str
    at: datetime.datetime
    preparation: bool


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float | None
    high: float | None
    n: int


@dataclass(frozen=True)
class CoachEffect:
    """A coach's random intercept (empirical Bayes, shrunk) with an approximate 95%
    interval from its conditional variance, on the bond's 1-5 item-mean scale."""

    effect: float
    low: float
    high: float

    @property
    def below_clinic(self) -> bool:
        return self.high < 0

    @property
    def above_clinic(self) -> bool:
        return self.low > 0


@dataclass
class Model:
    converged: bool
    note: str
    clinic_mean: float | None = None
    coach_variance: float | None = None
    patient_variance: float | None = None
    residual_variance: float | None = None
    effects: dict[int, CoachEffect] = field(default_factory=dict)

    @property
    def icc(self) -> float | None:
        """Share of the bond's variance between coaches (point estimate)."""
        parts = (self.coach_variance, self.patient_variance, self.residual_variance)
        if any(p is None for p in parts) or sum(parts) <= 0:
            return None
        return self.coach_variance / sum(parts)


@dataclass
class CoachRow:
    coach_id: int
    name: str
    patients: int
    ratings: int
    last_preparation: Interval | None
    dosings_with_open_flag: reports.Rate | None
    response: reports.Rate | None
    remission: reports.Rate | None
    effect: CoachEffect | None

    @property
    def enough(self) -> bool:
        return self.patients >= MIN_PATIENTS


@dataclass(frozen=True)
class FunnelPoint:
    label: str
    n: int
    mean: float


@dataclass(frozen=True)
class Funnel:
    mean: float
    sd: float
    points: list[FunnelPoint]
    curve_n: list[int]


@dataclass
class SupervisionPage:
    rows: list[CoachRow]
    model: Model
    funnel: Funnel | None
    outcome_measure: str
    unattributed: int  # ratings with neither a named coach nor a facilitated session
    min_patients: int = MIN_PATIENTS


# --- the model ---------------------------------------------------------------------------


def fit_coach_model(ratings: list[Rating]) -> Model:
    """`bond ~ C(step)` with a random intercept per coach and a variance component per
    patient within coach, fitted by REML. A fit that fails or does not converge says so and
    estimates nothing."""
    coaches = {r.coach_id for r in ratings}
    patients = {(r.coach_id, r.patient_id) for r in ratings}
    if len(coaches) < 2 or len(patients) < 3:
        return Model(False, "Too few coaches or patients for a multilevel model.")
    import pandas as pd
    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    frame = pd.DataFrame(
        {
            "bond": [r.bond for r in ratings],
            "step": [r.step for r in ratings],
            "coach": [str(r.coach_id) for r in ratings],
            "patient": [f"{r.coach_id}:{r.patient_id}" for r in ratings],
        }
    )
    formula = "bond ~ C(step)" if frame["step"].nunique() > 1 else "bond ~ 1"
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        try:
            fit = smf.mixedlm(
                formula,
                frame,
                groups=frame["coach"],
                re_formula="1",  # the coach's random intercept (statsmodels drops it by
                # default once a variance component is given)
                vc_formula={"patient": "0 + C(patient)"},
            ).fit(reml=True)
        except (ConvergenceWarning, ValueError, np.linalg.LinAlgError) as exc:
            return Model(False, f"The multilevel model did not converge ({type(exc).__name__}).")
    if not fit.converged:
        return Model(False, "The multilevel model did not converge.")
    coach_variance = float(fit.cov_re.iloc[0, 0])
    effects = {}
    for coach, values in fit.random_effects.items():
        effect = float(values.iloc[0])
        variance = float(np.asarray(fit.random_effects_cov[coach])[0, 0])
        half = 1.96 * math.sqrt(max(variance, 0.0))
        effects[int(coach)] = CoachEffect(effect, effect - half, effect + half)
    # The clinic mean: the model's fitted mean over every rating (fixed effects only).
    fixed = fit.model.exog @ fit.fe_params.to_numpy()
    return Model(
        converged=True,
        note="",
        clinic_mean=float(np.mean(fixed)),
        coach_variance=coach_variance,
        patient_variance=float(fit.vcomp[0]),
        residual_variance=float(fit.scale),
        effects=effects,
    )


# --- descriptive numbers ------------------------------------------------------------------


def mean_interval(values: list[float]) -> Interval | None:
    if not values:
        return None
    x = np.asarray(values, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0:
        return Interval(float(x.mean()), None, None, len(x))
    from scipy import stats

    low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    return Interval(float(x.mean()), float(low), float(high), len(x))


def last_preparation_bonds(
    ratings: list[Rating], first_dosing: dict[int, datetime.datetime]
) -> dict[int, list[float]]:
    """{coach: [each patient's last preparation bond about that coach, before the first
    dosing]}; ties broken by time then response id."""
    last: dict[tuple[int, int], Rating] = {}
    for r in sorted(ratings, key=lambda r: (r.at, r.response_id)):
        dosing = first_dosing.get(r.patient_id)
        if r.preparation and (dosing is None or r.at < dosing):
            last[(r.coach_id, r.patient_id)] = r
    found: dict[int, list[float]] = {}
    for (coach_id, _), r in sorted(last.items()):
        found.setdefault(coach_id, []).append(r.bond)
    return found


def funnel_of(rows: list[CoachRow], ratings: list[Rating]) -> Funnel | None:
    """The clinic's mean and SD from every rating; a point for each row shown that has
    enough patients (a coach below the minimum is never plotted as a number)."""
    bonds = [r.bond for r in ratings]
    if len(bonds) < 2:
        return None
    by_coach: dict[int, list[float]] = {}
    for r in ratings:
        by_coach.setdefault(r.coach_id, []).append(r.bond)
    points = [
        FunnelPoint(row.name, len(by_coach[row.coach_id]), float(np.mean(by_coach[row.coach_id])))
        for row in rows
        if row.enough and row.coach_id in by_coach
    ]
    largest = max([len(v) for v in by_coach.values()] + [10])
    curve = sorted({*np.unique(np.geomspace(2, largest * 1.1, 40).astype(int)).tolist()})
    return Funnel(float(np.mean(bonds)), float(np.std(bonds, ddof=1)), points, curve)


# --- the reads ----------------------------------------------------------------------------


def _ratings(program: Program | None) -> tuple[list[Rating], int]:
    scores = Score.objects.filter(
        response__version__instrument__code="wai-sr", scale="bond", mean__isnull=False
    )
    if program is not None:
        scores = scores.filter(
            response__patient__in=Enrolment.objects.filter(program=program).values("patient_id")
        )
    rows = list(
        scores.values_list(
            "response_id",
            "response__patient_id",
            "response__about_coach_id",
            "response__session_id",
            "response__session__kind",
            "response__session__protocol_step__label",
            "response__administered_at",
            "mean",
        )
    )
    facilitated: dict[int, list[int]] = {}
    session_ids = {row[3] for row in rows if row[2] is None and row[3] is not None}
    for session_id, user_id in Session.facilitators.through.objects.filter(
        session_id__in=session_ids
    ).values_list("session_id", "user_id"):
        facilitated.setdefault(session_id, []).append(user_id)
    ratings, unattributed = [], 0
    for response_id, patient_id, about, session_id, kind, step, at, mean in rows:
        coach_ids = [about] if about else sorted(facilitated.get(session_id, []))
        if not coach_ids:
            unattributed += 1
            continue
        ratings.extend(
            Rating(
                response_id=response_id,
                patient_id=patient_id,
                coach_id=coach_id,
                bond=mean,
                step=step or (kind or "no session"),
                at=at,
                preparation=kind == SessionKind.PREPARATION,
            )
            for coach_id in coach_ids
        )
    return ratings, unattributed


def _dosings(program: Program | None):
    """Completed, attended individual dosings: (patient, session id, start)."""
    attended = Attendance.objects.filter(
        session__kind=SessionKind.DOSING, session__status=Session.Status.COMPLETED
    ).exclude(status__in=Attendance.NOT_COMING)
    if program is not None:
        attended = attended.filter(session__program=program)
    return list(
        attended.values_list("patient_id", "session_id", "session__scheduled_start").order_by(
            "session__scheduled_start"
        )
    )


def _flag_open_at(flags, start) -> bool:
    return any(
        raised <= start and (resolved is None or resolved > start) for raised, resolved in flags
    )


def _outcome_measure(totals) -> tuple[str, str, dict] | None:
    """The first depression measure (GRID-HAMD-17, QIDS-SR-16, PHQ-9) whose definition has a
    response rule and for which the clinic has scores."""
    definitions = reports.outcome_definitions([code for code, _ in reports.MEASURES])
    for code, label in reports.MEASURES:
        definition = definitions.get(code, {})
        if definition.get("special", {}).get("treatment_outcome") and any(
            t.code == code for t in totals
        ):
            return code, label, definition
    return None


def supervision_for(*, user, program: Program | None = None, coach=None) -> SupervisionPage:
    """The page's numbers for `user`: every coach for clinicians and admins (optionally one
    program or one coach), only the coach's own row for a coach. The model is fitted on
    every coach's ratings either way, so a coach's estimate is shrunk the same for all."""
    role = role_of(user)
    if role is None:
        raise PermissionError("No role.")
    ratings, unattributed = _ratings(program)
    model = fit_coach_model(ratings)
    dosings = _dosings(program)
    first_dosing: dict[int, datetime.datetime] = {}
    span: dict[int, tuple[datetime.datetime, datetime.datetime]] = {}
    for patient_id, _session_id, start in dosings:
        first_dosing.setdefault(patient_id, start)
        span[patient_id] = (first_dosing[patient_id], start)
    leads: dict[int, set[int]] = {}
    assignments = CoachAssignment.objects.filter(role=CoachAssignment.Role.LEAD)
    if program is not None:
        assignments = assignments.filter(enrolment__program=program)
    for coach_id, patient_id in assignments.values_list("coach_id", "enrolment__patient_id"):
        leads.setdefault(coach_id, set()).add(patient_id)
    flags: dict[int, list] = {}
    for patient_id, raised, resolved in Flag.objects.filter(
        kind__in=ALLIANCE_KINDS, patient_id__in={d[0] for d in dosings}
    ).values_list("patient_id", "raised_at", "resolved_at"):
        flags.setdefault(patient_id, []).append((raised, resolved))
    totals = reports.depression_totals(patient_ids=list(span))
    measure = _outcome_measure(totals)
    last_prep = last_preparation_bonds(ratings, first_dosing)

    if sees_all_patients(user):
        people = list(all_coaches())
        if coach is not None:
            people = [c for c in people if c.pk == coach.pk]
    elif role == Role.COACH:
        people = [user]
    else:
        people = []
    rows = []
    for person in people:
        mine = [r for r in ratings if r.coach_id == person.pk]
        patients = {r.patient_id for r in mine}
        led = leads.get(person.pk, set())
        led_dosings = [d for d in dosings if d[0] in led]
        with_flag = sum(_flag_open_at(flags.get(d[0], []), d[2]) for d in led_dosings)
        response = remission = None
        if measure is not None:
            code, _label, definition = measure
            outcome = reports.measure_outcomes(
                code, _label, definition, {p: span[p] for p in led if p in span}, totals
            )
            four_weeks = outcome.rows[0]
            response, remission = four_weeks.response, four_weeks.remission
        rows.append(
            CoachRow(
                coach_id=person.pk,
                name=person.display_name,
                patients=len(patients),
                ratings=len(mine),
                last_preparation=mean_interval(last_prep.get(person.pk, [])),
                dosings_with_open_flag=reports.wilson(with_flag, len(led_dosings)),
                response=response,
                remission=remission,
                effect=model.effects.get(person.pk),
            )
        )
    return SupervisionPage(
        rows=rows,
        model=model,
        funnel=funnel_of(rows, ratings),
        outcome_measure=(
            f"{measure[1]} at {FOUR_WEEKS}" if measure else "no measure with a response rule"
        ),
        unattributed=unattributed,
    )
