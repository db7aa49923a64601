import math

import numpy as np
import pytest
from hypothesis import given
from scipy.spatial.distance import jensenshannon

from hub.drift.divergence import js_distance, js_distance_rows
from tests.hub.drift.strategies import histogram, histogram_pair


def test_golden_value_by_hand() -> None:
    # p = [.5, .5], q = [1, 0], m = [.75, .25]
    kl_p = 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)
    kl_q = math.log2(1 / 0.75)
    expected = math.sqrt(0.5 * (kl_p + kl_q))
    assert js_distance([1, 1], [1, 0]).distance == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.5579230, abs=1e-7)


def test_disjoint_supports_are_at_distance_one() -> None:
    assert js_distance([5, 0, 0], [0, 2, 3]).distance == 1.0


def test_agrees_with_scipy() -> None:
    p, q = [10, 20, 30, 40, 0], [20, 20, 30, 25, 5]
    assert js_distance(p, q).distance == pytest.approx(jensenshannon(p, q, base=2), rel=1e-12)


def test_rows_broadcast() -> None:
    out = js_distance_rows(np.array([[1, 1], [1, 0]]), np.array([[[1, 0], [0, 1]]]))
    assert out.shape == (1, 2)
    assert out[0, 1] == 1.0


@given(histogram())
def test_distance_to_itself_is_zero(x: np.ndarray) -> None:
    assert js_distance(x, x).distance == 0.0


@given(histogram_pair())
def test_bounded_and_symmetric(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    d = js_distance(a, b).distance
    assert 0.0 <= d <= 1.0
    assert d == js_distance(b, a).distance
