import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from hub.drift.stattests import (
    chi_square,
    chi_square_rows,
    ks_binned,
    ks_binned_rows,
    two_proportion,
)
from tests.hub.drift.strategies import histogram_pair


def test_chi_square_golden_by_hand() -> None:
    # Rows 60 / 60, columns 30 / 40 / 50, expected 15 / 20 / 25 in each row:
    # 2·25/15 + 2·25/25 = 16/3 with 2 dof, whose survival function is exp(−x/2).
    result = chi_square([10, 20, 30], [20, 20, 20])
    assert result.statistic == pytest.approx(16 / 3, rel=1e-12)
    assert result.dof == 2
    assert result.p_value == pytest.approx(math.exp(-8 / 3), rel=1e-12)


def test_chi_square_drops_bins_empty_in_both_and_matches_scipy() -> None:
    ref, cur = [0, 10, 20, 0, 30, 0], [0, 20, 20, 0, 20, 0]
    result = chi_square(ref, cur)
    table = np.array([[10, 20, 30], [20, 20, 20]])
    statistic, p_value, dof, _ = stats.chi2_contingency(table, correction=False)
    assert (result.statistic, result.dof) == (pytest.approx(statistic, rel=1e-12), dof)
    assert result.p_value == pytest.approx(p_value, rel=1e-12)


def test_chi_square_untestable_cases_carry_no_evidence() -> None:
    assert chi_square([5, 0], [7, 0]) == chi_square([0, 0], [1, 2])
    assert chi_square([5, 0], [7, 0]).p_value == 1.0
    assert chi_square([5, 0], [7, 0]).dof == 0


def test_ks_golden() -> None:
    # CDFs [1/6, 1/2, 1] and [1/3, 2/3, 1]: D = 1/6; n = m = 60, so sqrt(nm/(n+m)) = sqrt(30).
    result = ks_binned([10, 20, 30], [20, 20, 20])
    assert result.statistic == pytest.approx(1 / 6, rel=1e-12)
    assert result.p_value == pytest.approx(stats.kstwobign.sf(math.sqrt(30) / 6), rel=1e-12)
    assert (result.n_reference, result.n_current) == (60, 60)


def test_ks_binned_statistic_equals_ks_2samp_on_discrete_values() -> None:
    # Samples living on the bin labels have the same ECDF step points, so D matches exactly.
    rng = np.random.default_rng(7)
    a = rng.integers(0, 8, size=400)
    b = rng.integers(1, 9, size=300)
    result = ks_binned(np.bincount(a, minlength=9), np.bincount(b, minlength=9))
    assert result.statistic == pytest.approx(stats.ks_2samp(a, b).statistic, rel=1e-12)


def test_two_proportion_golden_by_hand() -> None:
    # Pooled 0.15, se = sqrt(.15·.85·(1/100 + 1/100)), z = 0.1 / se.
    z = 0.1 / math.sqrt(0.15 * 0.85 * 0.02)
    result = two_proportion(10, 100, 20, 100)
    assert (result.rate_reference, result.rate_current) == (0.1, 0.2)
    assert result.z == pytest.approx(z, rel=1e-12)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(z), rel=1e-12)
    assert result.p_value == pytest.approx(0.04767, abs=1e-5)


def test_two_proportion_degenerate_cases() -> None:
    assert two_proportion(0, 100, 0, 50).p_value == 1.0
    assert two_proportion(0, 0, 3, 50).p_value == 1.0
    with pytest.raises(ValueError, match="between 0 and the number of trials"):
        two_proportion(5, 4, 0, 10)


def test_rows_agree_with_scalars() -> None:
    ref = np.array([[10, 20, 30, 0], [5, 5, 5, 5]])
    cur = np.array([[20, 20, 20, 0], [0, 10, 10, 0]])
    statistic, dof, p_value = chi_square_rows(ref, cur)
    ks, ks_p = ks_binned_rows(ref, cur)
    for i in range(2):
        one = chi_square(ref[i], cur[i])
        assert (statistic[i], dof[i], p_value[i]) == (one.statistic, one.dof, one.p_value)
        assert (ks[i], ks_p[i]) == (ks_binned(ref[i], cur[i]).statistic, ks_binned(ref[i], cur[i]).p_value)


@given(histogram_pair())
def test_p_values_lie_in_unit_interval(pair: tuple[np.ndarray, np.ndarray]) -> None:
    chi = chi_square(*pair)
    ks = ks_binned(*pair)
    assert 0.0 <= chi.p_value <= 1.0
    assert 0.0 <= ks.p_value <= 1.0
    assert chi.statistic >= 0.0
    assert 0.0 <= ks.statistic <= 1.0 + 1e-12


@given(
    st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
    st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
)
def test_two_proportion_p_value_in_unit_interval(a: tuple[int, int], b: tuple[int, int]) -> None:
    result = two_proportion(a[0], a[1], b[0], b[1])
    assert 0.0 <= result.p_value <= 1.0


@given(histogram_pair())
def test_identical_histograms_are_not_significant(pair: tuple[np.ndarray, np.ndarray]) -> None:
    x = pair[0]
    assert chi_square(x, x).p_value == pytest.approx(1.0)
    assert ks_binned(x, x).p_value == 1.0
