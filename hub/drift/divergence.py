"""Jensen-Shannon distance between two binned distributions (base 2, so it lies in [0, 1]).

``JS = sqrt(½ KL(p ‖ m) + ½ KL(q ‖ m))`` with ``m = (p + q) / 2``: symmetric, bounded, and finite even
when a bin is empty on one side, so it needs no epsilon (unlike PSI).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hub.drift._counts import as_counts, empty, proportions


@dataclass(frozen=True)
class JSResult:
    """Jensen-Shannon distance of one feature (the square root of the divergence)."""

    distance: float


def _kl_to_mixture(p: NDArray[np.float64], m: NDArray[np.float64]) -> NDArray[np.float64]:
    # 0 · log(0 / m) = 0; where p > 0, m >= p / 2 > 0.
    ratio = np.divide(p, m, out=np.ones_like(p), where=p > 0)
    return (p * np.log2(ratio)).sum(axis=-1)


def js_distance_rows(reference: ArrayLike, current: ArrayLike) -> NDArray[np.float64]:
    """JS distance along the last axis (bins), broadcasting leading axes.

    An empty histogram on either side carries no evidence and gives 0.

    >>> js_distance_rows([[1, 0], [5, 5]], [[0, 1], [5, 5]]).tolist()
    [1.0, 0.0]
    """
    ref, cur = as_counts(reference, current)
    p, q = np.broadcast_arrays(proportions(ref), proportions(cur))
    m = (p + q) / 2.0
    divergence = 0.5 * (_kl_to_mixture(p, m) + _kl_to_mixture(q, m))
    distance = np.sqrt(np.clip(divergence, 0.0, 1.0))
    return np.where(empty(ref) | empty(cur), 0.0, distance)


def js_distance(reference: ArrayLike, current: ArrayLike) -> JSResult:
    """Jensen-Shannon distance (base 2) between two histograms over the same bins.

    Parameters
    ----------
    reference, current : array_like of shape (n_bins,)
        Non-negative counts over the same bins; totals may differ.

    Examples
    --------
    >>> round(js_distance([1, 1], [1, 0]).distance, 6)
    0.557923
    >>> js_distance([3, 0], [0, 7]).distance
    1.0
    """
    if np.ndim(reference) != 1 or np.ndim(current) != 1:
        raise ValueError("js_distance compares two 1-D histograms; use js_distance_rows for many")
    return JSResult(distance=float(js_distance_rows(reference, current)))
