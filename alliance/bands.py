"""Expected-trajectory band arithmetic (METHODS §1): pure, no Django, numpy only.

A band is the 10th, 25th and 50th percentiles of earlier patients' ratings at one protocol
step (`numpy.percentile`, linear interpolation); a patient's place in it is
`scipy.stats.percentileofscore(kind="weak")`, counted here in numpy. The flag rules and the
trajectory pages both call these, so a flag's evidence and the chart agree.
"""

from dataclasses import dataclass

import numpy as np

BAND_PERCENTILES = (10, 25, 50)
# Published fallbacks when too few earlier patients were rated at a step: the weak-bond
# cut-off for WAI-SR means (DESIGN §5) and the SRS cut-off of 36 (Duncan et al. 2003).
DEFAULT_LINES = {"bond": 3.5, "total": 3.5, "srs": 36.0}
MEASURES = {
    "bond": "WAI-SR bond (mean)",
    "total": "WAI-SR total (mean)",
    "srs": "SRS total",
}


@dataclass(frozen=True)
class Band:
    measure: str
    n: int
    p10: float | None
    p25: float | None
    p50: float | None
    source: str  # "clinic" or "default"

    @property
    def is_default(self) -> bool:
        return self.source == "default"


class Others:
    """The values at one step of every patient but one, as the off_track rule reads them,
    without copying them per patient: a sweep shares one sorted array per step among all its
    patients, and a percentile depends only on which value is left out, so it is computed
    once per distinct value left out (`memo`, shared too). Same numbers as a tuple of the
    other values would give: the same multiset goes to `numpy.percentile`."""

    __slots__ = ("_sorted", "_left_out", "_memo")

    def __init__(self, ordered: np.ndarray, left_out: float | None = None, memo=None):
        self._sorted = ordered
        self._left_out = left_out
        self._memo = {} if memo is None else memo

    def __len__(self) -> int:
        return len(self._sorted) - (self._left_out is not None)

    def __iter__(self):
        return iter(self.array().tolist())

    def array(self) -> np.ndarray:
        if self._left_out is None:
            return self._sorted
        return np.delete(self._sorted, np.searchsorted(self._sorted, self._left_out))

    def percentile(self, q: float) -> float:
        key = (self._left_out, q)
        if key not in self._memo:
            self._memo[key] = float(np.percentile(self.array(), q))
        return self._memo[key]

    def at_or_below(self, score: float) -> int:
        count = int(np.searchsorted(self._sorted, score, side="right"))
        return count - (self._left_out is not None and self._left_out <= score)


def pairs_of(values) -> np.ndarray:
    """A band's stored [[patient id, value], ...] as an n x 2 array."""
    return np.asarray(values, dtype=float).reshape(-1, 2)


def values_without(pairs: np.ndarray, patient_id: int | None) -> tuple[float, ...]:
    """The values of every patient but `patient_id`, in stored order."""
    if patient_id is not None:
        pairs = pairs[pairs[:, 0] != patient_id]
    return tuple(pairs[:, 1].tolist())


def percentile(values, q: float) -> float:
    if isinstance(values, Others):
        return values.percentile(q)
    return float(np.percentile(np.asarray(values, dtype=float), q))


def rank(values, score: float) -> float:
    """Percentage of earlier patients at or below `score`, 1 decimal: scipy's
    `percentileofscore(kind="weak")`, computed the same way (count * (100 / n)) without
    importing scipy.stats into the worker (about a second) for one count."""
    if isinstance(values, Others):
        n, count = len(values), values.at_or_below(score)
    else:
        array = np.asarray(values, dtype=float)
        n, count = len(array), int(np.count_nonzero(array <= score))
    if n == 0:
        return float("nan")
    return round(float(count * (100.0 / n)), 1)


def band_of(measure: str, values, *, min_n: int) -> Band:
    """The clinic's band from `values` when there are at least `min_n`, else the published
    default line (labelled as such; no quartiles are invented for it)."""
    values = np.asarray(values, dtype=float)
    if len(values) >= min_n and len(values):
        p10, p25, p50 = (float(p) for p in np.percentile(values, BAND_PERCENTILES))
        return Band(measure, len(values), p10, p25, p50, "clinic")
    return Band(measure, len(values), DEFAULT_LINES[measure], None, None, "default")
