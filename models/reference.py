"""The reference distribution shipped in a manifest: bin edges and training histograms per feature.

Agents count live features into these bins (`shared.features.histogram_counts`) and the hub compares the
merged counts with the reference histograms to detect drift.

>>> import numpy as np
>>> ref = reference_from_features(np.arange(20, dtype=np.float32).reshape(10, 2), np.linspace(0, 1, 10), n_bins=2)
>>> ref.bin_edges, ref.histograms
([[9.0], [10.0]], [[5, 5], [5, 5]])
"""

from __future__ import annotations

import numpy as np

from shared.features import histogram_counts
from shared.manifest import Reference

SCORE_BIN_WIDTH = 0.05
# Interior edges 0.05 … 0.95: with the open-ended outer bins, 20 bins of width 0.05 over [0, 1].
SCORE_BIN_EDGES: tuple[float, ...] = tuple(
    round(k * SCORE_BIN_WIDTH, 2) for k in range(1, round(1 / SCORE_BIN_WIDTH))
)


def quantile_edges(values: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Strictly increasing interior bin edges at the deciles (for ``n_bins=10``) of `values`.

    Equal quantiles collapse into one edge. An edge value that holds at least one bin's share of the
    data (a point mass, or a constant feature) gets a second edge just above it, so that the point mass
    has a bin of its own and a shift of that value in either direction moves counts out of it.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("need a non-empty 1-d array of finite values")
    if n_bins < 2:
        raise ValueError("n_bins must be >= 2")
    edges = np.unique(np.quantile(x, np.arange(1, n_bins) / n_bins))
    masses = [e for e in edges if np.count_nonzero(x == e) * n_bins >= x.size]
    return np.unique(np.concatenate([edges, [e + _gap(e) for e in masses]]))


def reference_from_features(X: np.ndarray, scores: np.ndarray, n_bins: int = 10) -> Reference:
    """Reference bins and histograms of training features `X` ``(n, features)`` and model `scores` ``(n,)``.

    Every histogram counts all ``n`` rows.
    """
    X = np.asarray(X)
    s = np.asarray(scores, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be a non-empty (n, features) array, got shape {X.shape}")
    if s.shape != (X.shape[0],) or not np.all(np.isfinite(s)):
        raise ValueError("need one finite score per row of X")
    bin_edges: list[list[float]] = []
    histograms: list[list[int]] = []
    for j in range(X.shape[1]):
        edges = quantile_edges(X[:, j], n_bins)
        bin_edges.append(edges.tolist())
        histograms.append(histogram_counts(X[:, j], edges).tolist())
    score_edges = np.asarray(SCORE_BIN_EDGES)
    return Reference(
        bin_edges=bin_edges,
        histograms=histograms,
        score_bin_edges=score_edges.tolist(),
        score_histogram=histogram_counts(s, score_edges).tolist(),
    )


def _gap(edge: float) -> float:
    """A small step above `edge` that float32 features can still resolve."""
    return max(abs(edge) * 1e-6, 1e-9)
