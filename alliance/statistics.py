"""Cohort statistics for the analytics page: scipy/numpy only, no hand-written formulas
beyond the Fisher z interval and Cohen's d_z (with its noncentral-t interval) that scipy does
not provide directly.

Each function returns None where the sample is too small to report (n < MIN_N); the page
shows "not enough data" instead of a number.
"""

import functools
import math
from dataclasses import dataclass

import numpy as np

MIN_N = 5


@dataclass(frozen=True)
class Correlation:
    r: float
    n: int
    p: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class PairedChange:
    n: int
    mean_before: float
    mean_after: float
    mean_change: float
    t: float
    p: float
    d_z: float  # Cohen's d for paired samples: mean change / SD of the changes
    d_z_low: float | None
    d_z_high: float | None


def _stats():
    # scipy.stats takes most of a second to import; loaded on first use so that the worker,
    # every management command and every web process do not pay for it at start-up.
    from scipy import stats

    return stats


@functools.cache
def _normal_quantile(probability: float) -> float:
    """The same for every cell of a page (0.975 for 95%): worked out once per process."""
    return float(_stats().norm.ppf(probability))


# scipy.special.ndtri(0.975), to the last bit (statistics.NormalDist is one unit off): the
# program page's intervals are then the very numbers scipy's binomtest gives.
Z_95 = 1.959963984540054


def wilson_interval(k: int, n: int) -> tuple[float, float]:
    """The Wilson score 95% interval of k successes in n > 0 trials, without continuity
    correction, as `scipy.stats.binomtest(k, n).proportion_ci(method="wilson")` computes it
    (Newcombe 1998). Closed form: importing scipy.stats for it cost the first program page of
    every web process most of a second (up to 1.9 s on a busy machine)."""
    p = k / n
    denom = 2 * (n + Z_95**2)
    center = (2 * n * p + Z_95**2) / denom
    delta = Z_95 / denom * math.sqrt(4 * n * p * (1 - p) + Z_95**2)
    return (0.0 if k == 0 else center - delta, 1.0 if k == n else center + delta)


def _pairs(xs, ys):
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    if x.shape != y.shape:
        raise ValueError("Both series need one value per patient.")
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep]


def pearson(xs, ys, *, confidence: float = 0.95) -> Correlation | None:
    """Pearson r with a two-sided p and a Fisher z confidence interval."""
    x, y = _pairs(xs, ys)
    n = len(x)
    if n < MIN_N or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    result = _stats().pearsonr(x, y)
    r = float(result.statistic)
    # Fisher z: atanh(r) is about normal with standard error 1/sqrt(n-3).
    z = math.atanh(max(min(r, 0.999999), -0.999999))
    half = _normal_quantile(0.5 + confidence / 2) / math.sqrt(n - 3)
    return Correlation(
        r=r,
        n=n,
        p=float(result.pvalue),
        ci_low=math.tanh(z - half),
        ci_high=math.tanh(z + half),
    )


def fit_line(xs, ys) -> tuple[float, float] | None:
    """Least-squares slope and intercept of y on x, for the line drawn on a scatter plot; None
    where Pearson r is not reported either."""
    x, y = _pairs(xs, ys)
    if len(x) < MIN_N or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    result = _stats().linregress(x, y)
    return float(result.slope), float(result.intercept)


def no_variation(*series) -> bool:
    """True when any series (NaNs dropped) has values that are all equal."""
    for values in series:
        x = np.asarray(values, dtype=float)
        x = x[~np.isnan(x)]
        if len(x) and np.ptp(x) == 0:
            return True
    return False


def d_z_interval(
    t: float, n: int, *, confidence: float = 0.95
) -> tuple[float | None, float | None]:
    """Confidence interval of d_z = t / sqrt(n) from the noncentral t distribution: the
    noncentrality parameters under which the observed t sits at the tails, over sqrt(n).
    (None, None) if scipy cannot place them (the page then says "no interval")."""
    from scipy.optimize import brentq
    from scipy.special import nctdtr

    df = n - 1
    tail = (1 - confidence) / 2
    # Wide enough to hold the interval (about t ± 1.96·sqrt(1 + t²/2df)), narrow enough that
    # scipy's noncentral t stays finite at the ends.
    span = 3 * math.sqrt(1 + t * t / (2 * df)) + 1

    # `nctdtr` is what `stats.nct.cdf` evaluates for a finite t and df > 0, without the
    # distribution's argument handling around it: the same numbers, at about a fiftieth of
    # the cost of each of the thirty or so steps a page's four intervals take.
    def ncp_where(probability: float) -> float:
        return brentq(lambda ncp: nctdtr(df, ncp, t) - probability, t - span, t + span)

    root_n = math.sqrt(n)
    try:
        return ncp_where(1 - tail) / root_n, ncp_where(tail) / root_n
    except ValueError:
        return None, None


def paired_change(before, after) -> PairedChange | None:
    """Paired t-test of after - before, with Cohen's d for paired samples (d_z) and its
    noncentral-t interval. None when too few pairs or the changes do not vary (see
    `no_variation`)."""
    x, y = _pairs(before, after)
    n = len(x)
    if n < MIN_N:
        return None
    diff = y - x
    sd = float(np.std(diff, ddof=1))
    if sd == 0:
        return None
    result = _stats().ttest_rel(y, x)
    low, high = d_z_interval(float(result.statistic), n)
    return PairedChange(
        n=n,
        mean_before=float(np.mean(x)),
        mean_after=float(np.mean(y)),
        mean_change=float(np.mean(diff)),
        t=float(result.statistic),
        p=float(result.pvalue),
        d_z=float(np.mean(diff)) / sd,
        d_z_low=low,
        d_z_high=high,
    )
