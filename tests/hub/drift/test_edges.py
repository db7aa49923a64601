import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.drift.edges import reference_edges, reference_edges_matrix
from shared.features import histogram_counts
from shared.manifest import Reference


def test_deciles() -> None:
    assert reference_edges(np.arange(1, 11, dtype=float)).tolist() == pytest.approx(
        [1.9, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1], abs=1e-12
    )


def test_constant_feature_gets_a_narrow_middle_bin() -> None:
    edges = reference_edges([518.67] * 100)
    assert edges.tolist() == pytest.approx([518.67 - 518.67e-6, 518.67 + 518.67e-6], rel=1e-15)
    assert histogram_counts(np.array([518.67] * 100), edges).tolist() == [0, 100, 0]
    assert histogram_counts(np.array([518.0, 519.0]), edges).tolist() == [1, 0, 1]


def test_small_constant_uses_an_absolute_tolerance() -> None:
    assert reference_edges([0.0, 0.0]).tolist() == [-1e-6, 1e-6]


def test_mass_tied_at_the_minimum_is_kept_apart() -> None:
    values = np.array([1.0] * 95 + [2.0, 3.0, 4.0, 5.0, 6.0])
    edges = reference_edges(values)
    assert edges.tolist() == [1.0, 1.5]
    assert histogram_counts(values, edges).tolist() == [0, 95, 5]


def test_two_valued_feature_keeps_both_values_apart() -> None:
    values = np.array([21.60] * 30 + [21.61] * 70)
    counts = histogram_counts(values, reference_edges(values))
    assert sorted(c for c in counts.tolist() if c) == [30, 70]


def test_non_finite_values_are_ignored_and_all_nan_refused() -> None:
    assert reference_edges([np.nan, 1.0, 2.0, np.inf, 3.0], n_bins=2).tolist() == [2.0]
    with pytest.raises(ValueError, match="no finite values"):
        reference_edges([np.nan])
    with pytest.raises(ValueError, match="n_bins"):
        reference_edges([1.0], n_bins=1)


def test_matrix_edges_make_a_valid_manifest_reference() -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=500), np.full(500, 3.0), rng.integers(0, 3, 500)])
    edges = reference_edges_matrix(x)
    hists = [histogram_counts(x[:, j], e).tolist() for j, e in enumerate(edges)]
    Reference(
        bin_edges=[e.tolist() for e in edges],
        histograms=hists,
        score_bin_edges=[0.5],
        score_histogram=[1, 1],
    )


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=200), st.integers(2, 20))
def test_edges_are_strictly_increasing_and_split_any_non_constant_data(values: list[float], n_bins: int) -> None:
    edges = reference_edges(values, n_bins)
    assert np.all(np.isfinite(edges))
    assert np.all(np.diff(edges) > 0)
    assert 1 <= edges.size <= n_bins - 1 or edges.size == 2
    counts = histogram_counts(np.array(values), edges)
    if max(values) - min(values) > 1e-6 * max(1.0, abs(min(values)), abs(max(values))):
        assert np.count_nonzero(counts) >= 2
    else:
        assert np.count_nonzero(counts[1:-1]) == 1
