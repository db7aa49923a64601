"""Validation shared by the statistics: histogram counts in, float arrays out."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def as_counts(reference: ArrayLike, current: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Both histograms as float arrays, bins on the last axis; leading axes broadcast.

    Raises ``ValueError`` on negative or non-finite counts, or on a bin-count mismatch.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.ndim == 0 or cur.ndim == 0:
        raise ValueError("histograms need at least one axis of bins")
    if ref.shape[-1] != cur.shape[-1]:
        raise ValueError(f"bin counts differ: reference has {ref.shape[-1]} bins, current {cur.shape[-1]}")
    for name, arr in (("reference", ref), ("current", cur)):
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError(f"{name} counts must be finite and non-negative")
    return ref, cur


def proportions(counts: NDArray[np.float64]) -> NDArray[np.float64]:
    """Counts over their total along the last axis; an empty histogram gives all zeros."""
    total = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def empty(counts: NDArray[np.float64]) -> NDArray[np.bool_]:
    """True where a histogram (last axis) has no counts at all."""
    return np.asarray(counts.sum(axis=-1) == 0)
