import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from hub.drift.fdr import benjamini_hochberg, bh_adjust

# Benjamini & Hochberg (1995), section 4.1: 15 p-values from a clinical trial.
BH_1995 = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262, 0.5719]
BH_1995 += [0.6528, 0.7590, 1.0]


def test_textbook_example() -> None:
    result = benjamini_hochberg(BH_1995, alpha=0.05)
    assert result.rejected.tolist() == [True] * 4 + [False] * 11
    # By hand: 15·p/rank, then the running minimum from the largest p-value down.
    assert result.adjusted[:5] == pytest.approx([0.0015, 0.003, 0.0095, 0.035625, 0.0603], abs=1e-12)
    assert result.adjusted[5:9] == pytest.approx([15 * 0.0298 / 7] * 2 + [0.0645, 0.0765], abs=1e-12)
    assert result.adjusted[-1] == 1.0


def test_matches_scipy_in_any_order() -> None:
    rng = np.random.default_rng(3)
    p = rng.permutation(BH_1995)
    assert bh_adjust(p) == pytest.approx(stats.false_discovery_control(p, method="bh"), rel=1e-12)


def test_leading_axes_are_independent_families() -> None:
    p = np.array([[0.01, 0.04, 0.03], [0.5, 0.001, 0.2]])
    out = bh_adjust(p)
    assert out[0].tolist() == bh_adjust(p[0]).tolist()
    assert out[1].tolist() == bh_adjust(p[1]).tolist()


@pytest.mark.parametrize("bad", [[0.1, np.nan], [-0.1], [1.5]])
def test_rejects_invalid_p_values(bad: list[float]) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bh_adjust(bad)


p_lists = st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=60)


@given(p_lists)
def test_adjusted_is_monotone_at_least_raw_and_capped(p: list[float]) -> None:
    raw = np.array(p)
    adjusted = bh_adjust(raw)
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(adjusted[order]) >= 0)
    assert np.all(adjusted >= raw)
    assert np.all(adjusted <= 1.0)


@given(p_lists, st.floats(min_value=0.001, max_value=0.5))
def test_rejections_are_a_prefix_of_the_sorted_p_values(p: list[float], alpha: float) -> None:
    raw = np.array(p)
    rejected = benjamini_hochberg(raw, alpha).rejected
    if rejected.any():
        assert raw[rejected].max() <= raw[~rejected].min(initial=1.0)
