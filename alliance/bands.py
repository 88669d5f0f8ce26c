"""Expected-trajectory band arithmetic (METHODS §1): pure, no Django, numpy and scipy only.

A band is the 10th, 25th and 50th percentiles of earlier patients' ratings at one protocol
step (`numpy.percentile`, linear interpolation); a patient's place in it is
`scipy.stats.percentileofscore(kind="weak")`. The flag rules and the trajectory pages both
call these, so a flag's evidence and the chart agree.
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


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def rank(values, score: float) -> float:
    """Percentage of earlier patients at or below `score` (scipy, kind="weak"), 1 decimal."""
    from scipy.stats import percentileofscore

    return round(float(percentileofscore(np.asarray(values, dtype=float), score, kind="weak")), 1)


def band_of(measure: str, values, *, min_n: int) -> Band:
    """The clinic's band from `values` when there are at least `min_n`, else the published
    default line (labelled as such; no quartiles are invented for it)."""
    values = np.asarray(values, dtype=float)
    if len(values) >= min_n and len(values):
        p10, p25, p50 = (float(p) for p in np.percentile(values, BAND_PERCENTILES))
        return Band(measure, len(values), p10, p25, p50, "clinic")
    return Band(measure, len(values), DEFAULT_LINES[measure], None, None, "default")
