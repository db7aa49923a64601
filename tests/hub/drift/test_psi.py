import math

import numpy as np
import pytest
from hypothesis import given

from hub.drift.psi import EPSILON, PSI_MODERATE, PSI_SIGNIFICANT, psi, psi_band, psi_rows
from tests.hub.drift.strategies import histogram, histogram_pair


def test_golden_value_by_hand() -> None:
    # p = [.1, .2, .3, .4], q = [.2, .2, .3, .3]:  .1·ln 2 + (−.1)·ln(.75)
    expected = 0.1 * math.log(2.0) - 0.1 * math.log(0.75)
    result = psi([10, 20, 30, 40], [20, 20, 30, 30])
    assert result.value == pytest.approx(expected, rel=1e-12)
    assert result.value == pytest.approx(0.0980829, abs=1e-7)
    assert result.band == "stable"


def test_empty_bin_uses_epsilon_floor() -> None:
    # p = [.5, .5, 0] → [.5, .5, 1e-4]; q = [.25, .25, .5]
    expected = 2 * (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.5 - EPSILON) * math.log(0.5 / EPSILON)
    assert psi([50, 50, 0], [25, 25, 50]).value == pytest.approx(expected, rel=1e-12)


def test_totals_do_not_matter_only_proportions() -> None:
    assert psi([1, 2, 3], [100, 200, 300]).value == 0.0


def test_bands() -> None:
    assert (PSI_MODERATE, PSI_SIGNIFICANT) == (0.1, 0.2)
    assert [psi_band(v) for v in (0.0, 0.0999, 0.1, 0.1999, 0.2, 5.0)] == [
        "stable",
        "stable",
        "moderate",
        "moderate",
        "significant",
        "significant",
    ]


def test_rows_match_scalar_and_broadcast() -> None:
    ref = np.array([[10, 20, 30, 40], [1, 1, 1, 1]])
    cur = np.array([[[20, 20, 30, 30], [1, 1, 1, 1]], [[10, 20, 30, 40], [4, 0, 0, 0]]])
    out = psi_rows(ref, cur)
    assert out.shape == (2, 2)
    for i in range(2):
        for j in range(2):
            assert out[i, j] == psi(ref[j], cur[i, j]).value


def test_empty_histogram_carries_no_evidence() -> None:
    assert psi([0, 0, 0], [1, 2, 3]).value == 0.0


@pytest.mark.parametrize(
    ("ref", "cur", "message"),
    [([1, 2], [1, 2, 3], "bin counts differ"), ([1, -1], [1, 1], "non-negative"), ([1, np.nan], [1, 1], "finite")],
)
def test_bad_input(ref: list[float], cur: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        psi(ref, cur)


@given(histogram())
def test_psi_of_itself_is_zero(x: np.ndarray) -> None:
    assert psi(x, x).value == 0.0
    assert psi(x, 3 * x).value == 0.0


@given(histogram_pair())
def test_psi_is_non_negative_and_finite(pair: tuple[np.ndarray, np.ndarray]) -> None:
    value = psi(*pair).value
    assert value >= 0.0
    assert math.isfinite(value)
