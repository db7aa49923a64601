"""Population Stability Index (PSI) between two binned distributions.

``PSI = Σ (q_i - p_i) · ln(q_i / p_i)`` over bins, with reference proportions ``p`` and current
proportions ``q`` floored at `EPSILON` so an empty bin gives a large but finite term. Conventional bands:
below 0.1 stable, 0.1–0.2 moderate shift, 0.2 and above significant shift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hub.drift._counts import as_counts, empty, proportions

PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.2
EPSILON = 1e-4  # floor for a bin's proportion (evidently's choice): an empty bin costs ~q·ln(q/1e-4), not infinity

Band = Literal["stable", "moderate", "significant"]


@dataclass(frozen=True)
class PSIResult:
    """PSI of one feature and its band."""

    value: float
    band: Band


def psi_band(value: float, significant: float = PSI_SIGNIFICANT) -> Band:
    """The band of a PSI value: ``significant`` from `significant` (the drift threshold in use, conventionally
    0.2), ``moderate`` from half of it (conventionally 0.1).

    >>> psi_band(0.05), psi_band(0.1), psi_band(0.25)
    ('stable', 'moderate', 'significant')
    >>> psi_band(0.25, significant=0.5)
    'moderate'
    """
    if value >= significant:
        return "significant"
    if value >= significant * (PSI_MODERATE / PSI_SIGNIFICANT):
        return "moderate"
    return "stable"


def psi_rows(reference: ArrayLike, current: ArrayLike, *, eps: float = EPSILON) -> NDArray[np.float64]:
    """PSI along the last axis (bins), broadcasting leading axes: one value per histogram pair.

    An empty histogram on either side carries no evidence and gives 0.

    >>> psi_rows([[10, 20, 30, 40], [5, 5, 5, 5]], [[20, 20, 30, 30], [5, 5, 5, 5]]).round(6).tolist()
    [0.098083, 0.0]
    """
    if not eps > 0:
        raise ValueError("eps must be positive")
    ref, cur = as_counts(reference, current)
    p = np.maximum(proportions(ref), eps)
    q = np.maximum(proportions(cur), eps)
    value = ((q - p) * np.log(q / p)).sum(axis=-1)
    return np.where(empty(ref) | empty(cur), 0.0, value)


def psi(reference: ArrayLike, current: ArrayLike, *, eps: float = EPSILON) -> PSIResult:
    """PSI of the current histogram against the reference (same bins), with its band.

    Parameters
    ----------
    reference, current : array_like of shape (n_bins,)
        Non-negative counts over the same bins; totals may differ.
    eps : float
        Floor for a bin's proportion, so a bin empty on one side stays finite.

    Examples
    --------
    >>> r = psi([10, 20, 30, 40], [20, 20, 30, 30])
    >>> round(r.value, 6), r.band
    (0.098083, 'stable')
    >>> psi([50, 50], [90, 10]).band
    'significant'
    """
    if np.ndim(reference) != 1 or np.ndim(current) != 1:
        raise ValueError("psi compares two 1-D histograms; use psi_rows for many")
    value = float(psi_rows(reference, current, eps=eps))
    return PSIResult(value=value, band=psi_band(value))
