"""Benjamini-Hochberg control of the false discovery rate across many tests (e.g. one per feature)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True, eq=False)
class BHResult:
    """BH-adjusted p-values (same order as the input) and which hypotheses are rejected at `alpha`."""

    adjusted: NDArray[np.float64]
    rejected: NDArray[np.bool_]
    alpha: float


def bh_adjust(p_values: ArrayLike) -> NDArray[np.float64]:
    """BH-adjusted p-values along the last axis; leading axes are independent families.

    ``adj_(i) = min_{j ≥ i} min(1, m · p_(j) / j)`` over the ascending order ``p_(1) ≤ … ≤ p_(m)``, so
    the adjusted values are monotone in the raw ones, never below them, and capped at 1.

    >>> bh_adjust([0.01, 0.04, 0.03, 0.5]).round(4).tolist()
    [0.04, 0.0533, 0.0533, 0.5]
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim == 0:
        raise ValueError("p_values needs at least one axis")
    if np.any(np.isnan(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError("p-values must lie in [0, 1]")
    m = p.shape[-1]
    if m == 0:
        return p.copy()
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1)
    scaled = ranked * (m / np.arange(1, m + 1))  # one rounding of p · (m / i ≥ 1), so never below p
    monotone = np.minimum.accumulate(scaled[..., ::-1], axis=-1)[..., ::-1]
    adjusted = np.empty_like(p)
    np.put_along_axis(adjusted, order, np.minimum(monotone, 1.0), axis=-1)
    return adjusted


def benjamini_hochberg(p_values: ArrayLike, alpha: float = 0.05) -> BHResult:
    """Adjust p-values by Benjamini-Hochberg and reject those whose adjusted value is at most `alpha`.

    Parameters
    ----------
    p_values : array_like of shape (m,)
        Raw p-values of m tests, in any order.
    alpha : float
        Target false discovery rate.

    Examples
    --------
    The 15 p-values of Benjamini & Hochberg (1995), section 4.1: four rejections at 0.05.

    >>> p = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344,
    ...      0.0459, 0.3240, 0.4262, 0.5719, 0.6528, 0.7590, 1.0]
    >>> int(benjamini_hochberg(p, alpha=0.05).rejected.sum())
    4
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must lie in (0, 1)")
    adjusted = bh_adjust(p_values)
    return BHResult(adjusted=adjusted, rejected=adjusted <= alpha, alpha=alpha)
