"""The gate's paired block bootstrap: how much worse is the candidate, with what uncertainty, when windows
are not independent (see `hub.gate.verdict` for the rule that uses it). Pure numpy; seeded; row order does not matter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "BlockBootstrap", "PairedSlice", "Resampled", "block_bootstrap", "interval", "paired_slice", "per_label", "scored",
]

_MAX_DRAWS = 1 << 21
"""Block draws held in memory at once by the bootstrap (resamples × blocks of one cohort)."""


@dataclass(frozen=True, eq=False)
class PairedSlice:
    """Both models' decisions on every window of one slice, with its label, cohort and block (`paired_slice`)."""

    y: np.ndarray  # bool (n,)
    alarm_candidate: np.ndarray  # bool (n,)
    alarm_incumbent: np.ndarray  # bool (n,)
    cohort: np.ndarray  # str (n,)
    block: np.ndarray  # str (n,)


@dataclass(frozen=True, eq=False)
class Resampled:
    """How much worse the candidate is in each resample (NaN where a resample has no positive, or negative)."""

    recall_drop: np.ndarray  # (resamples,)
    far_rise: np.ndarray  # (resamples,)
    positive_blocks: int
    negative_blocks: int
    far_incumbent: np.ndarray  # (resamples,): the incumbent's false-alarm rate in each resample


@dataclass(frozen=True, eq=False)
class BlockBootstrap:
    """`Resampled` for the whole slice and for each cohort, from the same draws."""

    overall: Resampled
    cohorts: dict[str, Resampled]
    n_blocks: int


def block_bootstrap(paired: PairedSlice, *, resamples: int = 1000, seed: int = 0) -> BlockBootstrap:
    """Paired, stratified block bootstrap of the candidate's recall drop and false-alarm-rate rise.

    Each cohort's blocks are drawn with replacement, as many as it has, `resamples` times; both models are
    scored on the same draw. Blocks and cohorts are taken in sorted order from one seeded generator, so the
    result does not depend on the order of the rows. A block spanning two cohorts counts in each.

    >>> y = np.array([True, True, False, False])
    >>> same = paired_slice(y, y * 0.9, y * 0.9, (0.5, 0.5), blocks=["a", "b", "a", "b"])
    >>> b = block_bootstrap(same, resamples=200)
    >>> b.n_blocks, b.overall.positive_blocks, float(np.abs(b.overall.recall_drop).max())
    (2, 2, 0.0)
    """
    y = paired.y
    ac, ai = paired.alarm_candidate, paired.alarm_incumbent
    counts = np.stack([y, ~y, y & ac, y & ai, ~y & ac, ~y & ai], axis=1).astype(np.float64)
    names, stratum = np.unique(paired.cohort, return_inverse=True)
    blocks, block = np.unique(paired.block, return_inverse=True)
    keys, unit = np.unique(stratum.ravel() * blocks.size + block.ravel(), return_inverse=True)
    per_unit = np.stack([np.bincount(unit.ravel(), weights=c, minlength=keys.size) for c in counts.T], axis=1)
    unit_stratum = keys // max(blocks.size, 1)
    rng = np.random.default_rng(seed)
    total = np.zeros((resamples, counts.shape[1]))
    cohorts = {}
    for s, name in enumerate(names.tolist()):
        rows = per_unit[unit_stratum == s]
        sums = _resample_sums(rng, rows, resamples)
        total += sums
        cohorts[str(name)] = _resampled(sums, int(np.sum(rows[:, 0] > 0)), int(np.sum(rows[:, 1] > 0)))
    overall = _resampled(total, np.unique(block[y]).size, np.unique(block[~y]).size)
    return BlockBootstrap(overall, cohorts, int(blocks.size))


def _resample_sums(rng: np.random.Generator, rows: np.ndarray, resamples: int) -> np.ndarray:
    """Column sums of `rows` (one per block) over `resamples` draws of as many blocks, with replacement."""
    n = rows.shape[0]
    out = np.empty((resamples, rows.shape[1]))
    step = max(1, _MAX_DRAWS // max(n, 1))
    for start in range(0, resamples, step):
        k = min(step, resamples - start)
        draws = rng.integers(0, n, size=(k, n)) + n * np.arange(k)[:, None]
        times = np.bincount(draws.ravel(), minlength=k * n).reshape(k, n)  # how often each block was drawn
        out[start : start + k] = times @ rows
    return out


def _resampled(sums: np.ndarray, positive_blocks: int, negative_blocks: int) -> Resampled:
    pos, neg, tp_cand, tp_inc, fp_cand, fp_inc = sums.T
    return Resampled(_ratio(tp_inc - tp_cand, pos), _ratio(fp_cand - fp_inc, neg), positive_blocks, negative_blocks,
                     _ratio(fp_inc, neg))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, math.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def interval(draws: np.ndarray, alpha: float) -> tuple[float, float]:
    """The [alpha, 1 - alpha] quantiles of the finite `draws`; NaN, NaN when there are none."""
    finite = draws[np.isfinite(draws)]
    if finite.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def paired_slice(
    y_true: ArrayLike,
    scores_candidate: ArrayLike,
    scores_incumbent: ArrayLike,
    thresholds: tuple[float, float],
    *,
    blocks: ArrayLike,
    cohorts: ArrayLike | None = None,
) -> PairedSlice:
    """The slice per window for `GateInput.paired`: labels, both models' alarms (each at its own threshold,
    as in `metrics_on_slice`), cohorts (pass the same as there) and blocks (windows resampled together:
    the evaluation split's key, a device's time block)."""
    y, s_cand, s_inc = scored(y_true, scores_candidate, scores_incumbent)
    t_cand, t_inc = thresholds
    c = np.full(y.shape, "") if cohorts is None else per_label(cohorts, y, "cohort").astype(str)
    return PairedSlice(y.astype(bool), s_cand >= t_cand, s_inc >= t_inc, c, per_label(blocks, y, "block").astype(str))


def scored(y_true: ArrayLike, s_cand: ArrayLike, s_inc: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and both models' scores as arrays, one score per label from each model (ValueError otherwise)."""
    y = np.asarray(y_true)
    sc, si = np.asarray(s_cand, dtype=np.float64), np.asarray(s_inc, dtype=np.float64)
    if not (y.ndim == 1 and sc.shape == y.shape and si.shape == y.shape):
        raise ValueError(f"need one score per label from each model: {y.shape}, {sc.shape}, {si.shape}")
    return y, sc, si


def per_label(values: ArrayLike, y: np.ndarray, what: str) -> np.ndarray:
    """`values` as an array with one entry per label (ValueError naming `what` otherwise)."""
    v = np.asarray(values)
    if v.shape != y.shape:
        raise ValueError(f"need one {what} per label: {v.shape} vs {y.shape}")
    return v
