"""Cohort statistics from each patient's measures (no database); the measures themselves
are chosen in SQL (test_cohort_selectors)."""

import math

import numpy as np
import pytest
from scipy import stats

from alliance import analytics


def _cohort_of(prep_bonds, depressions, *, week_bonds=None):
    """Patients 1, 2, … with their preparation bond, depression at 4 weeks and, if given,
    bond one week after dosing, as `cohort_selectors` hands them over."""
    measures = {}
    for pid, (bond, depression) in enumerate(zip(prep_bonds, depressions, strict=True), 1):
        measures[pid] = {"prep_bond": bond, "dep_4w": depression}
        if week_bonds:
            measures[pid]["week_bond"] = week_bonds[pid - 1]
    pseudonyms = {pid: f"P-{pid:03d}" for pid in measures}
    return analytics.cohort(analytics.Columns.of(measures, pseudonyms), dosings=len(measures))


def _cell(cohort, row_label, column_label):
    for grid in cohort.grids:
        for label, cells in grid.rows:
            for cell in cells:
                if label == row_label and cell.column_label == column_label:
                    return cell
    raise AssertionError(f"no cell {row_label} x {column_label}")


def test_a_cell_reports_pearson_r_with_a_fisher_z_interval():
    bonds = [2.5, 3.0, 3.25, 3.5, 4.0, 4.25, 4.75]
    depressions = [20, 17, 18, 12, 10, 11, 4]
    cohort = _cohort_of(bonds, depressions)
    cell = _cell(cohort, "Preparation alliance: bond", "GRID-HAMD-17 at 4 weeks")
    expected = stats.pearsonr(bonds, depressions)
    z, se = math.atanh(expected.statistic), 1 / math.sqrt(len(bonds) - 3)
    assert cell.n == 7
    assert cell.result.r == pytest.approx(expected.statistic)
    assert cell.result.p == pytest.approx(expected.pvalue)
    assert cell.result.ci_low == pytest.approx(math.tanh(z - 1.959964 * se), abs=1e-6)
    assert cell.result.ci_high == pytest.approx(math.tanh(z + 1.959964 * se), abs=1e-6)
    assert cell.result.r < -0.9
    scatter = analytics.scatter(cell)
    assert sorted(scatter["x"]) == bonds
    assert scatter["labels"][0].startswith("P-")
    assert scatter["summary"].startswith(f"r = {expected.statistic:.2f}, n = 7")


def test_fewer_than_five_patients_is_not_enough_data():
    cohort = _cohort_of([2.5, 3.0, 3.5, 4.0], [20, 15, 12, 6])
    cell = _cell(cohort, "Preparation alliance: bond", "GRID-HAMD-17 at 4 weeks")
    assert (cell.n, cell.result) == (4, None)
    assert "Not enough data (n = 4" in analytics.scatter(cell)["summary"]
    missing = _cell(cohort, "Preparation alliance: total", "GRID-HAMD-17 at 4 weeks")
    assert (missing.n, missing.result) == (0, None)


def test_alliance_change_from_preparation_to_one_week_after_is_a_paired_t_test():
    before = [3.0, 3.25, 3.5, 3.75, 4.0, 4.25]
    after = [3.5, 3.5, 4.0, 3.75, 4.5, 4.75]
    cohort = _cohort_of(before, [10] * 6, week_bonds=after)
    bond = next(change for change in cohort.changes if change.label == "Bond")
    expected = stats.ttest_rel(after, before)
    diff = np.subtract(after, before)
    assert bond.n == 6
    assert bond.result.t == pytest.approx(expected.statistic)
    assert bond.result.p == pytest.approx(expected.pvalue)
    assert bond.result.d_z == pytest.approx(diff.mean() / diff.std(ddof=1))
    assert bond.result.mean_change == pytest.approx(diff.mean())
    total = next(change for change in cohort.changes if change.label == "Total")
    assert (total.n, total.result) == (0, None)


def test_d_z_has_a_noncentral_t_interval_that_contains_it():
    before = [3.0, 3.25, 3.5, 3.75, 4.0, 4.25]
    after = [3.5, 3.5, 4.0, 3.75, 4.5, 4.75]
    bond = next(
        c for c in _cohort_of(before, [10] * 6, week_bonds=after).changes if c.label == "Bond"
    )
    result = bond.result
    assert result.d_z_low < result.d_z < result.d_z_high
    # At the interval's ends the observed t sits at the 97.5th and 2.5th percentiles.
    root_n = math.sqrt(6)
    assert stats.nct.cdf(result.t, 5, result.d_z_low * root_n) == pytest.approx(0.975)
    assert stats.nct.cdf(result.t, 5, result.d_z_high * root_n) == pytest.approx(0.025)


def test_zero_variance_says_no_variation_not_not_enough_data():
    cohort = _cohort_of([3.0, 3.5, 4.0, 4.5, 2.5], [12] * 5, week_bonds=[3.5, 4.0, 4.5, 5.0, 3.0])
    cell = _cell(cohort, "Preparation alliance: bond", "GRID-HAMD-17 at 4 weeks")
    assert (cell.n, cell.result, cell.no_variation) == (5, None, True)
    assert analytics.scatter(cell)["summary"].startswith("No variation (all 5 values")
    bond = next(c for c in cohort.changes if c.label == "Bond")
    assert (bond.result, bond.no_variation) == (None, True)


def test_a_tiny_p_reads_p_less_than_without_an_equals_sign():
    bonds = [2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 2.2, 3.3, 4.4]
    cohort = _cohort_of(bonds, [30 - 5 * b for b in bonds])
    cell = _cell(cohort, "Preparation alliance: bond", "GRID-HAMD-17 at 4 weeks")
    summary = analytics.scatter(cell)["summary"]
    assert "p < .001" in summary and "p = <" not in summary


def test_exact_means_come_from_the_answers_not_the_rounded_display_value():
    from outcomes.scoring import get_definition

    meq = get_definition("meq-30")
    answers = {str(n): (5 if n % 3 == 0 else 4) for n in range(1, 31)}
    # 10 items of 5 and 20 of 4: 130 / 30 = 4.3333..., stored for display as 4.33.
    assert analytics.exact_mean(meq, answers, "total") == pytest.approx(130 / 30, abs=1e-12)
    wai = get_definition("wai-sr")
    partial = {"3": 4, "5": 5, "7": None, "9": 4}
    assert analytics.exact_mean(wai, partial, "bond") == pytest.approx(13 / 3, abs=1e-12)


# --- how the grid and the scatter read ------------------------------------------------------


def test_the_scatter_draws_the_least_squares_line_across_the_range_of_x():
    bonds = [2.5, 3.0, 3.25, 3.5, 4.0, 4.25, 4.75]
    depressions = [20, 17, 18, 12, 10, 11, 4]
    cohort = _cohort_of(bonds, depressions)
    cell = _cell(cohort, "Preparation alliance: bond", "GRID-HAMD-17 at 4 weeks")
    fit = analytics.scatter(cell)["fit"]
    line = stats.linregress(bonds, depressions)
    assert fit["x"] == [2.5, 4.75]
    assert fit["y"] == pytest.approx([line.intercept + line.slope * x for x in (2.5, 4.75)])
    assert fit["slope"] == pytest.approx(line.slope) and fit["slope"] < 0


def test_no_line_where_no_r_is_reported():
    cohort = _cohort_of([2.5, 3.0, 3.5, 4.0], [20, 15, 12, 6])
    cell = _cell(cohort, "Preparation alliance: bond", "GRID-HAMD-17 at 4 weeks")
    assert analytics.scatter(cell)["fit"] is None and cell.strength == ""


@pytest.mark.parametrize(
    ("r", "strength"),
    [(-0.62, "neg-3"), (-0.5, "neg-3"), (-0.3, "neg-2"), (-0.12, "neg-1"), (0.05, ""),
     (0.1, "pos-1"), (0.49, "pos-2"), (0.91, "pos-3")],
)  # fmt: skip
def test_a_cells_colour_follows_the_sign_and_size_of_r(r, strength):
    result = analytics.statistics.Correlation(r=r, n=20, p=0.01, ci_low=r - 0.2, ci_high=r + 0.2)
    cell = analytics.Cell(id="x", row_label="a", column_label="b", result=result, n=20)
    assert cell.strength == strength
    assert strength in [key for key, _words in analytics.STRENGTH_LEGEND]


def test_whole_step_instruments_count_the_items_of_each_scale():
    definition = {
        "scale": {"min": 1, "max": 5, "step": 1},
        "items": [{"number": n} for n in range(1, 5)] + [{"number": 5, "scored": False}],
        "subscales": [{"code": "bond", "items": [1, 3]}],
    }
    assert analytics.whole_scale_items(definition) == {"total": 4, "bond": 2}
    # One item in half steps: its sums are rounded for display, so none is taken as exact.
    definition["items"][0]["scale"] = {"step": 0.5}
    assert analytics.whole_scale_items(definition) == {}
