"""Cohort analytics: the questions of Levin et al. 2024 asked of the clinic's own patients.

Pure functions over each patient's measures; `cohort_selectors.cohort_measures` chooses them
in the database. Each patient contributes one value per measure:

- alliance at the last preparation: the latest WAI-SR (item means) before their first dosing;
  two ratings at the same moment are told apart by their session's time, then the patient's
  own rating before one entered by a coach or clinician, then the later record;
- alliance one week after dosing: the WAI-SR nearest to 7 days after their last dosing
  (4 to 10 days after);
- depression at 4 weeks, 3, 6 and 12 months: the total nearest to that point after the last
  dosing, within a window around it (below);
- peak MEQ-30 and peak PIQ: the highest total item mean after any of their dosings.

Correlations and the paired change come from `statistics` (scipy) on exact item means (from
the answers, not the 2-decimal means stored for display); a cell with fewer than five
patients says so instead of showing a number, and a cell where a measure does not vary says
that instead.
"""

from dataclasses import dataclass, field

import numpy as np

from . import statistics

ALLIANCE_SCALES = [("total", "total"), ("bond", "bond"), ("goal", "goal"), ("task", "task")]
# (key, label, days after the last dosing, half-width of the window in days)
FOLLOW_UPS = [
    ("dep_4w", "4 weeks", 28, 7),
    ("dep_3m", "3 months", 91, 14),
    ("dep_6m", "6 months", 182, 21),
    ("dep_12m", "12 months", 365, 30),
]
WEEK_AFTER = (7, 3)  # one week after the last dosing, 4 to 10 days
DEPRESSION_MEASURES = [
    ("grid-hamd-17", "GRID-HAMD-17 (clinician-rated, as in the study)"),
    ("qids-sr-16", "QIDS-SR-16"),
    ("phq-9", "PHQ-9"),
]
DEFAULT_DEPRESSION = DEPRESSION_MEASURES[0][0]
INSTRUMENTS = ("wai-sr", "meq-30", "piq")
# The study's headline pair: preparation bond against depression at 4 weeks.
DEFAULT_CELL = "prep-1-0"


def exact_mean(definition: dict, answers: dict, scale: str) -> float | None:
    """The item mean of one scale from the answers, unrounded: the mean of the answered
    scored items (reverse-keyed ones turned round), as the scoring engine computes it before
    rounding for display. None when the scale has no answered item."""
    items = {item["number"]: item for item in definition["items"]}
    if scale == "total":
        numbers = [n for n, item in items.items() if item.get("scored", True)]
    else:
        numbers = next(
            (sub["items"] for sub in definition["subscales"] if sub["code"] == scale), []
        )
    reverse = set(definition.get("reverse_items", []))
    values = []
    for number in numbers:
        raw = answers.get(str(number), answers.get(number))
        if raw is None:
            continue
        if number in reverse:
            sc = items[number].get("scale", definition["scale"])
            raw = sc["min"] + sc["max"] - raw
        values.append(float(raw))
    return sum(values) / len(values) if values else None


def whole_scale_items(definition: dict) -> dict[str, int]:
    """How many items each scale (total and subscales) has, for instruments whose items all
    move in whole steps. A complete rating of such a scale stores its sum exactly, so its
    exact item mean is that sum over this count: the same number `exact_mean` gets from the
    answers, without reading them. Empty for any other instrument."""
    items = definition["items"]
    scales = [{**definition["scale"], **(item.get("scale") or {})} for item in items]
    if not all(float(sc[key]).is_integer() for sc in scales for key in ("min", "max", "step")):
        return {}
    counts = {"total": sum(1 for item in items if item.get("scored", True))}
    counts.update({sub["code"]: len(sub["items"]) for sub in definition.get("subscales", [])})
    return counts


@dataclass
class Cell:
    id: str
    row_label: str
    column_label: str
    result: statistics.Correlation | None
    n: int  # patients with both values
    # The patients with both values, ordered by pseudonym: labels, x and y side by side.
    labels: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    xs: np.ndarray = field(default_factory=lambda: np.array([]))
    ys: np.ndarray = field(default_factory=lambda: np.array([]))
    no_variation: bool = False  # enough patients, but one measure has a single value

    @property
    def points(self) -> list[tuple[str, float, float]]:
        """(pseudonym, x, y) per patient: built only for the one scatter drawn, not for every
        cell of the grid."""
        return list(zip(self.labels.tolist(), self.xs.tolist(), self.ys.tolist(), strict=True))

    @property
    def strength(self) -> str:
        """The cell's colour on the grid: the sign of r and how strong it is by Cohen's rule of
        thumb (0.1 small, 0.3 medium, 0.5 large); "" when there is no r or it is below 0.1."""
        if self.result is None:
            return ""
        size = abs(self.result.r)
        level = next((n for n, cut in ((3, 0.5), (2, 0.3), (1, 0.1)) if size >= cut), 0)
        if level == 0:
            return ""
        return f"{'pos' if self.result.r > 0 else 'neg'}-{level}"

    def fit(self) -> dict | None:
        """The least-squares line across the range of x, when r is reported."""
        if self.result is None:
            return None
        line = statistics.fit_line(self.xs, self.ys)
        if line is None:
            return None
        slope, intercept = line
        ends = [float(self.xs.min()), float(self.xs.max())]
        return {"x": ends, "y": [intercept + slope * x for x in ends], "slope": slope}


# The legend under each grid: (strength, words), from strong negative to strong positive.
STRENGTH_LEGEND = [
    ("neg-3", "r ≤ −0.5"),
    ("neg-2", "−0.5 < r ≤ −0.3"),
    ("neg-1", "−0.3 < r ≤ −0.1"),
    ("", "−0.1 < r < 0.1, or no r"),
    ("pos-1", "0.1 ≤ r < 0.3"),
    ("pos-2", "0.3 ≤ r < 0.5"),
    ("pos-3", "r ≥ 0.5"),
]


@dataclass
class Grid:
    title: str
    columns: list[str]
    rows: list[tuple[str, list[Cell]]]


@dataclass
class Change:
    label: str
    n: int
    result: statistics.PairedChange | None
    no_variation: bool = False  # every patient changed by the same amount


@dataclass
class Cohort:
    patients: int
    dosings: int
    depression_label: str
    grids: list[Grid]
    changes: list[Change]

    def cell(self, cell_id: str) -> "Cell | None":
        return next(
            (
                cell
                for grid in self.grids
                for _, cells in grid.rows
                for cell in cells
                if cell.id == cell_id
            ),
            None,
        )


def scatter(cell: Cell) -> dict:
    """One cell's points for the scatter plot drawn when the cell is chosen (the page embeds
    only the chosen cell's; another is fetched when chosen, so the page does not grow with
    every cell times every patient)."""
    return {
        "x": cell.xs.tolist(),
        "y": cell.ys.tolist(),
        "labels": cell.labels.tolist(),
        "xTitle": cell.row_label,
        "yTitle": cell.column_label,
        "summary": _summary(cell),
        "fit": cell.fit(),
    }


def _summary(cell: Cell) -> str:
    if cell.no_variation:
        return f"No variation (all {cell.n} values of one measure are equal); r is undefined."
    if cell.result is None:
        return f"Not enough data (n = {cell.n}; at least {statistics.MIN_N} needed)."
    r = cell.result
    return f"r = {r.r:.2f}, n = {r.n}, {p_text(r.p)}, 95% CI {r.ci_low:.2f} to {r.ci_high:.2f}"


def p_text(p: float) -> str:
    """APA style with its sign: "p < .001" or "p = .034"."""
    return "p < .001" if p < 0.001 else "p = " + f"{p:.3f}".lstrip("0")


@dataclass(frozen=True)
class Columns:
    """Each measure as one column over the cohort, patients ordered by pseudonym (NaN where
    a patient has no value), so a cell is two columns and a mask rather than a pass over
    every patient's measures."""

    labels: np.ndarray
    values: dict[str, np.ndarray]

    @classmethod
    def of(
        cls, measures: dict[int, dict[str, float]], pseudonyms: dict[int, str], keys=()
    ) -> "Columns":
        """From each patient's measures; `keys` are columns to have even if nobody has them."""
        order = sorted(measures, key=pseudonyms.__getitem__)
        keys = {*keys, *(key for values in measures.values() for key in values)}
        return cls(
            labels=np.array([pseudonyms[pid] for pid in order], dtype=object),
            values={
                key: np.array([measures[pid].get(key, np.nan) for pid in order], dtype=float)
                for key in keys
            },
        )

    def column(self, key: str) -> np.ndarray:
        return self.values.get(key, np.full(len(self.labels), np.nan))


def _cell(cell_id, row, column, columns: Columns) -> Cell:
    row_key, row_label = row
    column_key, column_label = column
    x, y = columns.column(row_key), columns.column(column_key)
    both = ~(np.isnan(x) | np.isnan(y))
    xs, ys = x[both], y[both]
    return Cell(
        id=cell_id,
        row_label=row_label,
        column_label=column_label,
        result=statistics.pearson(xs, ys),
        n=len(xs),
        labels=columns.labels[both],
        xs=xs,
        ys=ys,
        no_variation=len(xs) >= statistics.MIN_N and statistics.no_variation(xs, ys),
    )


def _grid(title, prefix, rows, columns, measured: Columns) -> Grid:
    return Grid(
        title=title,
        columns=[label for _, label in columns],
        rows=[
            (
                row_label,
                [
                    _cell(f"{prefix}-{i}-{j}", (row_key, row_label), column, measured)
                    for j, column in enumerate(columns)
                ],
            )
            for i, (row_key, row_label) in enumerate(rows)
        ],
    )


def cohort(
    measured: Columns,
    *,
    dosings: int,
    depression: str = DEFAULT_DEPRESSION,
) -> Cohort:
    """The grids and changes from the cohort's measures (`cohort_selectors`)."""
    short = dict(DEPRESSION_MEASURES)[depression].split(" ")[0]
    depression_columns = [(key, f"{short} at {label}") for key, label, _, _ in FOLLOW_UPS]
    prep_rows = [
        (f"prep_{scale}", f"Preparation alliance: {label}") for scale, label in ALLIANCE_SCALES
    ]
    acute_columns = [("meq_peak", "Peak MEQ-30"), ("piq_peak", "Peak PIQ")]
    grids = [
        _grid(
            "Alliance at the last preparation session",
            "prep",
            prep_rows,
            depression_columns + acute_columns,
            measured,
        ),
        _grid(
            "Acute experience and later depression",
            "acute",
            [("piq_peak", "Peak PIQ"), ("meq_peak", "Peak MEQ-30")],
            depression_columns,
            measured,
        ),
        _grid(
            "Alliance one week after the last dosing",
            "week",
            [
                ("week_total", "Alliance one week after dosing: total"),
                ("week_bond", "Alliance one week after dosing: bond"),
            ],
            depression_columns,
            measured,
        ),
    ]
    changes = []
    for scale, label in ALLIANCE_SCALES:
        before, after = measured.column(f"prep_{scale}"), measured.column(f"week_{scale}")
        both = ~(np.isnan(before) | np.isnan(after))
        before, after = before[both], after[both]
        changes.append(
            Change(
                label=label.capitalize(),
                n=len(before),
                result=statistics.paired_change(before, after),
                no_variation=len(before) >= statistics.MIN_N
                and statistics.no_variation(after - before),
            )
        )
    return Cohort(
        patients=len(measured.labels),
        dosings=dosings,
        depression_label=dict(DEPRESSION_MEASURES)[depression],
        grids=grids,
        changes=changes,
    )
