"""Reference bin edges from training values: what a model manifest ships and agents bin against.

Edges are interior quantiles (deciles by default), deduplicated, so each reference bin holds about the
same share of the data; `shared.features.histogram_counts` adds the two open-ended outer bins.

A (near-)constant feature, common in real sensors (several C-MAPSS FD001 sensors never move), would
collapse to one repeated edge. It gets two edges ``v ± tol`` instead, ``tol = rel_tol · max(1, |v|)``:
all reference mass sits in the middle bin, and any material move in either direction lands in an outer
bin, where PSI and the tests see it. A feature with a few distinct values keeps its distinct quantiles;
if they all tie at the minimum, an edge halfway to the next value keeps the minimum apart from the rest.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

DEFAULT_BINS = 10
REL_TOL = 1e-6


def reference_edges(values: ArrayLike, n_bins: int = DEFAULT_BINS, *, rel_tol: float = REL_TOL) -> NDArray[np.float64]:
    """Strictly increasing bin edges for one feature from its finite training values.

    Parameters
    ----------
    values : array_like
        Training values of the feature; non-finite ones are ignored.
    n_bins : int
        Target number of inner bins: ``n_bins - 1`` quantile edges before deduplication.
    rel_tol : float
        Relative half-width of the middle bin of a constant feature.

    Examples
    --------
    >>> reference_edges(range(100), n_bins=4).tolist()
    [24.75, 49.5, 74.25]
    >>> reference_edges([518.67] * 50).round(6).tolist()
    [518.669481, 518.670519]
    """
    if n_bins < 2:
        raise ValueError("n_bins must be at least 2")
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("no finite values to build edges from")
    lo, hi = float(x.min()), float(x.max())
    tol = rel_tol * max(1.0, abs(lo), abs(hi))
    if hi - lo <= tol:
        v = (lo + hi) / 2.0
        return np.array([v - tol, v + tol])
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))
    if edges[-1] <= lo:  # most mass tied at the minimum: split it from the values above
        edges = np.array([lo, (lo + float(x[x > lo].min())) / 2.0])
    return edges


def reference_edges_matrix(
    values: ArrayLike, n_bins: int = DEFAULT_BINS, *, rel_tol: float = REL_TOL
) -> list[NDArray[np.float64]]:
    """`reference_edges` for each column of a ``(samples, features)`` matrix.

    >>> [e.tolist() for e in reference_edges_matrix([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]], n_bins=2)]
    [[1.0], [0.999999, 1.000001]]
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a (samples, features) matrix, got shape {x.shape}")
    return [reference_edges(x[:, j], n_bins, rel_tol=rel_tol) for j in range(x.shape[1])]
