"""Two-sample tests on binned counts: chi-square homogeneity, a binned KS test, two proportions.

Each returns a p-value in [0, 1]. Two histograms of which either is empty carry no evidence:
statistic 0, p-value 1. Significance alone is not drift: with a large fleet every tiny difference is
significant, so `hub.drift.report` also requires a material effect size (PSI).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from hub.drift._counts import as_counts


@dataclass(frozen=True)
class ChiSquareResult:
    """Chi-square test of homogeneity: statistic, degrees of freedom, p-value."""

    statistic: float
    dof: int
    p_value: float


@dataclass(frozen=True)
class KSResult:
    """Binned two-sample KS test: max CDF difference, approximate p-value, sample sizes."""

    statistic: float
    p_value: float
    n_reference: int
    n_current: int


@dataclass(frozen=True)
class TwoProportionResult:
    """Two-proportion z-test of a change in rate (e.g. anomalies per window)."""

    rate_reference: float
    rate_current: float
    difference: float
    z: float
    p_value: float


def chi_square_rows(
    reference: ArrayLike, current: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]]:
    """Chi-square homogeneity test along the last axis (bins), broadcasting leading axes.

    Returns ``(statistic, dof, p_value)`` arrays. Bins empty in both histograms are dropped, so zero
    padding does not change the result. For a 2 × k table the statistic reduces to
    ``Σ_j (a_j·N_b − b_j·N_a)² / (N_a·N_b·(a_j + b_j))``.
    """
    a, b = as_counts(reference, current)
    a, b = np.broadcast_arrays(a, b)
    n_a = a.sum(axis=-1, keepdims=True)
    n_b = b.sum(axis=-1, keepdims=True)
    col = a + b
    num = (a * n_b - b * n_a) ** 2
    den = n_a * n_b * col
    terms = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    statistic = terms.sum(axis=-1)
    dof = np.count_nonzero(col > 0, axis=-1).astype(np.int64) - 1
    testable = (dof > 0) & (n_a[..., 0] > 0) & (n_b[..., 0] > 0)
    statistic = np.where(testable, statistic, 0.0)
    dof = np.where(testable, dof, 0)
    p_value = np.where(testable, stats.chi2.sf(statistic, np.maximum(dof, 1)), 1.0)
    return statistic, dof, np.clip(p_value, 0.0, 1.0)


def chi_square(reference: ArrayLike, current: ArrayLike) -> ChiSquareResult:
    """Chi-square test that two histograms over the same bins come from one distribution.

    Parameters
    ----------
    reference, current : array_like of shape (n_bins,)
        Non-negative counts; bins empty in both are dropped (``dof = non-empty bins − 1``).

    Examples
    --------
    >>> r = chi_square([10, 20, 30, 0], [20, 20, 20, 0])
    >>> round(r.statistic, 6), r.dof, round(r.p_value, 6)
    (5.333333, 2, 0.069483)
    """
    if np.ndim(reference) != 1 or np.ndim(current) != 1:
        raise ValueError("chi_square compares two 1-D histograms; use chi_square_rows for many")
    statistic, dof, p_value = chi_square_rows(reference, current)
    return ChiSquareResult(statistic=float(statistic), dof=int(dof), p_value=float(p_value))


def ks_binned_rows(reference: ArrayLike, current: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Binned KS test along the last axis (bins), broadcasting leading axes: ``(statistic, p_value)``.

    The statistic is the largest difference between the two empirical CDFs evaluated at the bin edges;
    the p-value is the asymptotic two-sample one, ``Q_KS(sqrt(n·m / (n + m)) · D)``. Binning can only
    hide CDF differences, so on binned data the p-value is approximate and conservative.
    """
    a, b = as_counts(reference, current)
    a, b = np.broadcast_arrays(a, b)
    n_a = a.sum(axis=-1)
    n_b = b.sum(axis=-1)
    testable = (n_a > 0) & (n_b > 0)
    cdf_a = np.cumsum(a, axis=-1) / np.where(n_a > 0, n_a, 1.0)[..., None]
    cdf_b = np.cumsum(b, axis=-1) / np.where(n_b > 0, n_b, 1.0)[..., None]
    statistic = np.where(testable, np.abs(cdf_a - cdf_b).max(axis=-1), 0.0)
    en = np.sqrt(n_a * n_b / np.where(testable, n_a + n_b, 1.0))
    p_value = np.where(testable, stats.kstwobign.sf(en * statistic), 1.0)
    return statistic, np.clip(p_value, 0.0, 1.0)


def ks_binned(reference: ArrayLike, current: ArrayLike) -> KSResult:
    """Two-sample Kolmogorov-Smirnov test on histograms over the same bins (approximate).

    Parameters
    ----------
    reference, current : array_like of shape (n_bins,)
        Non-negative counts.

    Examples
    --------
    >>> r = ks_binned([10, 20, 30], [20, 20, 20])
    >>> round(r.statistic, 6), round(r.p_value, 4), r.n_reference, r.n_current
    (0.166667, 0.3752, 60, 60)
    """
    if np.ndim(reference) != 1 or np.ndim(current) != 1:
        raise ValueError("ks_binned compares two 1-D histograms; use ks_binned_rows for many")
    statistic, p_value = ks_binned_rows(reference, current)
    return KSResult(
        statistic=float(statistic),
        p_value=float(p_value),
        n_reference=int(np.sum(reference)),
        n_current=int(np.sum(current)),
    )


def two_proportion_rows(
    x_reference: ArrayLike, n_reference: ArrayLike, x_current: ArrayLike, n_current: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Pooled two-proportion z-test, element-wise: ``(z, two-sided p_value)``.

    A side with no trials, or a pooled rate of exactly 0 or 1, carries no evidence: z 0, p-value 1.
    """
    x1, n1, x2, n2 = (np.asarray(v, dtype=np.float64) for v in (x_reference, n_reference, x_current, n_current))
    if np.any(x1 < 0) or np.any(x2 < 0) or np.any(x1 > n1) or np.any(x2 > n2):
        raise ValueError("successes must lie between 0 and the number of trials")
    ok = (n1 > 0) & (n2 > 0)
    safe1 = np.where(n1 > 0, n1, 1.0)
    safe2 = np.where(n2 > 0, n2, 1.0)
    pooled = (x1 + x2) / (safe1 + safe2)
    se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / safe1 + 1.0 / safe2))
    ok = ok & (se > 0)
    z = np.where(ok, (x2 / safe2 - x1 / safe1) / np.where(ok, se, 1.0), 0.0)
    p_value = np.where(ok, 2.0 * stats.norm.sf(np.abs(z)), 1.0)
    return z, np.clip(p_value, 0.0, 1.0)


def two_proportion(x_reference: int, n_reference: int, x_current: int, n_current: int) -> TwoProportionResult:
    """Two-sided pooled z-test that a rate (x out of n) changed between reference and current.

    Examples
    --------
    >>> r = two_proportion(10, 100, 20, 100)
    >>> r.difference, round(r.z, 4), round(r.p_value, 4)
    (0.1, 1.9803, 0.0477)
    """
    z, p_value = two_proportion_rows(x_reference, n_reference, x_current, n_current)
    rate_ref = x_reference / n_reference if n_reference > 0 else 0.0
    rate_cur = x_current / n_current if n_current > 0 else 0.0
    return TwoProportionResult(
        rate_reference=rate_ref,
        rate_current=rate_cur,
        difference=rate_cur - rate_ref,
        z=float(z),
        p_value=float(p_value),
    )
