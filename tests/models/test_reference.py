"""Reference bins and histograms shipped in the manifest."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import models.reference
from models.reference import SCORE_BIN_EDGES, quantile_edges, reference_from_features
from shared.features import histogram_counts
from shared.manifest import Reference
from shared.wire import from_dict, to_dict


def test_deciles_of_a_continuous_feature() -> None:
    x = np.random.default_rng(0).normal(size=10_000)
    edges = quantile_edges(x)
    assert edges.size == 9 and np.all(np.diff(edges) > 0)
    assert histogram_counts(x, edges).tolist() == [1000] * 10


def test_constant_feature_gets_its_own_bin() -> None:
    edges = quantile_edges(np.full(50, 3.0, dtype=np.float32))
    assert edges.size == 2 and edges[0] == 3.0 and edges[1] > 3.0
    assert histogram_counts(np.full(50, 3.0), edges).tolist() == [0, 50, 0]
    assert histogram_counts(np.array([2.9, 3.1]), edges).tolist() == [1, 0, 1]


def test_point_mass_is_isolated_and_duplicates_collapse() -> None:
    x = np.r_[np.zeros(900), np.linspace(1.0, 2.0, 100)]
    edges = quantile_edges(x)
    assert np.all(np.diff(edges) > 0)
    counts = histogram_counts(x, edges)
    assert counts.sum() == x.size
    assert counts[np.searchsorted(edges, 0.0, side="right")] == 900  # zeros alone in their bin


def test_zero_point_mass_gap_is_finite_and_increasing() -> None:
    edges = quantile_edges(np.zeros(10))
    assert edges.tolist() == [0.0, 1e-9]


@pytest.mark.parametrize("bad", [np.array([]), np.array([1.0, np.nan]), np.ones((2, 2))])
def test_quantile_edges_refuse_bad_input(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        quantile_edges(bad)


def test_reference_histograms_count_every_row() -> None:
    rng = np.random.default_rng(1)
    X = np.c_[rng.normal(size=500), np.zeros(500), rng.integers(0, 3, 500)].astype(np.float32)
    scores = rng.uniform(size=500)
    ref = reference_from_features(X, scores)
    from_dict(Reference, to_dict(ref))
    assert len(ref.bin_edges) == 3
    assert all(sum(h) == 500 for h in ref.histograms)
    assert sum(ref.score_histogram) == 500
    assert ref.score_bin_edges == list(SCORE_BIN_EDGES)
    assert SCORE_BIN_EDGES[0] == 0.05 and SCORE_BIN_EDGES[-1] == 0.95 and len(SCORE_BIN_EDGES) == 19
    # a 3-valued feature: each value has its own bin
    assert sorted(c for c in ref.histograms[2] if c) == sorted(np.bincount(X[:, 2].astype(int)).tolist())


def test_reference_refuses_mismatched_scores() -> None:
    with pytest.raises(ValueError, match="score"):
        reference_from_features(np.zeros((3, 2), dtype=np.float32), np.zeros(2))


def test_docstring_examples_run() -> None:
    result = doctest.testmod(models.reference)
    assert result.failed == 0 and result.attempted > 0
