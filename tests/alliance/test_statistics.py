import math

import pytest

from alliance.statistics import d_z_interval, paired_change, pearson, wilson_interval


def test_pearson_matches_a_hand_computed_example():
    # x = 1..5, y = 2, 4, 5, 4, 5: sxy = 6, sxx = 10, syy = 6 -> r = 6 / sqrt(60) = 0.7746
    result = pearson([1, 2, 3, 4, 5], [2, 4, 5, 4, 5])
    assert result.n == 5
    assert result.r == pytest.approx(6 / math.sqrt(60), abs=1e-4)
    # Fisher z: atanh(0.7746) = 1.0317, se = 1/sqrt(2) = 0.7071, z_crit 1.96
    assert result.ci_low == pytest.approx(math.tanh(1.0317 - 1.96 * 0.7071), abs=1e-3)
    assert result.ci_high == pytest.approx(math.tanh(1.0317 + 1.96 * 0.7071), abs=1e-3)
    assert 0.05 < result.p < 0.2  # t = r*sqrt(3)/sqrt(1-r^2) = 2.12 on 3 df -> p = 0.124
    assert result.p == pytest.approx(0.124, abs=0.002)


def test_pearson_needs_five_complete_pairs():
    assert pearson([1, 2, 3, 4], [1, 2, 3, 5]) is None
    assert pearson([1, 2, 3, 4, 5, float("nan")], [2, 1, 4, 3, 5, 9]).n == 5


def test_pearson_of_a_constant_series_is_not_reported():
    assert pearson([3, 3, 3, 3, 3], [1, 2, 3, 4, 5]) is None


def test_paired_change_t_p_and_cohens_d():
    before = [3.0, 3.5, 4.0, 3.2, 3.8, 4.1]
    after = [3.4, 3.9, 4.1, 3.9, 4.0, 4.6]
    # diffs 0.4 0.4 0.1 0.7 0.2 0.5: mean 0.3833, sd 0.2137 -> d = 1.794, t = d*sqrt(6) = 4.394
    result = paired_change(before, after)
    assert result.n == 6
    assert result.mean_change == pytest.approx(0.3833, abs=1e-4)
    assert result.d_z == pytest.approx(1.794, abs=1e-3)
    assert result.t == pytest.approx(4.394, abs=1e-3)
    assert result.p == pytest.approx(0.00707, abs=2e-4)


def test_paired_change_needs_five_pairs():
    assert paired_change([1, 2, 3, 4], [2, 3, 4, 5]) is None


@pytest.mark.parametrize(
    ("t", "n"), [(2.5, 6), (-1.3, 40), (0.4, 12), (7.9, 3000), (-12.0, 9000), (0.0, 5)]
)
def test_d_z_interval_is_the_noncentral_t_interval_scipy_gives(t, n):
    # The interval found through scipy's noncentral t distribution itself, to the last bit.
    from scipy import stats
    from scipy.optimize import brentq

    df, tail = n - 1, (1 - 0.95) / 2
    span = 3 * math.sqrt(1 + t * t / (2 * df)) + 1
    expected = tuple(
        brentq(lambda ncp, q=q: stats.nct.cdf(t, df, ncp) - q, t - span, t + span) / math.sqrt(n)
        for q in (1 - tail, tail)
    )
    assert d_z_interval(t, n) == expected
    low, high = expected
    assert low < t / math.sqrt(n) < high


@pytest.mark.parametrize("n", [1, 2, 7, 40, 333, 6874])
def test_the_wilson_interval_is_scipys_to_the_last_bit(n):
    from scipy.stats import binomtest

    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        interval = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == (interval.low, interval.high), (k, n)


def test_the_wilson_interval_of_a_hand_computed_example():
    # 3 of 10: centre (0.3 + 1.96^2/20) / (1 + 1.96^2/10) = 0.3773, half-width 0.2695.
    low, high = wilson_interval(3, 10)
    assert (low, high) == (pytest.approx(0.1078, abs=1e-4), pytest.approx(0.6032, abs=1e-4))
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
