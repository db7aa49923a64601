"""How a retrain splits labelled traffic for the gate, adapted to the data it has, and the record of it.

A fixed split block (``split_block_s``, 1 h by default) cannot judge a small or young fleet: four devices
watched for two hours are eight blocks, and a 30 % slice of eight blocks is often empty. Two adaptations:

- **block size from the observed span** (`adaptive_block`): when the configured block cuts the labelled
  traffic into fewer than ``split_target_blocks`` device × time blocks, the block shrinks to
  ``span × devices / target`` (never below the observed window length, so one window rarely straddles two
  blocks, nor above the configured block). Only traces seen for the first time are split with it: a
  stored assignment never moves.
- **k-fold by device** (`choose_method`): when the frozen slice is still short of the gate's minimums but
  all labelled traffic would meet them, the candidate's recipe is judged on every labelled row, each row
  scored by a model fitted without its device's rows (``device_kfold``); the deployed artifact is still
  the one fitted on the training rows, and parity and latency are judged on it.

Otherwise (enough in the slice, or not enough anywhere) the frozen slice is judged (``frozen_slice``);
with too little anywhere the gate says ``insufficient_data``. The `SplitPlan` goes with the gate decision.

Pure: values in, a plan out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

SplitMethod = Literal["frozen_slice", "device_kfold"]


@dataclass(frozen=True)
class BlockChoice:
    """The block size the split keys use, the configured one, and the traffic it was chosen from."""

    block_s: float
    configured_block_s: float
    span_s: float
    devices: int
    blocks: int  # device × time blocks of the labelled traffic at `block_s`
    reason: str


@dataclass(frozen=True)
class SplitPlan:
    """How the gate judges this retrain: its method, the block size, and why (recorded with the decision)."""

    method: SplitMethod
    block: BlockChoice
    eval_rows: int  # rows judged: the frozen slice, or every labelled row for k-fold
    folds: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        block = out.pop("block")
        block["block_reason"] = block.pop("reason")
        return {**out, **block}


def n_blocks(device_id: np.ndarray, ts: np.ndarray, block_s: float) -> int:
    """Distinct device × time blocks of the rows (each row its own block when `block_s` is 0)."""
    if block_s <= 0:
        return len(ts)
    return len({(str(d), math.floor(float(t) / block_s)) for d, t in zip(device_id, ts, strict=True)})


def adaptive_block(device_id: np.ndarray, ts: np.ndarray, window_s: np.ndarray, *, configured: float,
                   target_blocks: int) -> BlockChoice:
    """The split block for these rows: the configured one, or smaller when it gives fewer than
    `target_blocks` blocks (see the module docstring).

    >>> d, t, w = np.array(["a"] * 4 + ["b"] * 4), np.tile([0.0, 600.0, 1200.0, 1800.0], 2), np.full(8, 60.0)
    >>> c = adaptive_block(d, t, w, configured=3600.0, target_blocks=8)
    >>> c.block_s, c.blocks
    (450.0, 8)
    >>> adaptive_block(d, t, w, configured=300.0, target_blocks=8).block_s
    300.0
    """
    devices = len(set(device_id.tolist()))
    span = float(ts.max() - ts.min()) if len(ts) else 0.0
    have = n_blocks(device_id, ts, configured)
    if configured <= 0 or have >= target_blocks or devices == 0:
        why = "per trace" if configured <= 0 else f"the configured block gives {have} blocks (target {target_blocks})"
        return BlockChoice(configured, configured, span, devices, have, why)
    floor = float(np.median(window_s)) if len(window_s) else 0.0
    wanted = span * devices / target_blocks
    block = min(configured, max(wanted, floor, 1e-3))
    got = n_blocks(device_id, ts, block)
    why = (f"the configured {configured:g} s block gives {have} blocks over {span:.0f} s of {devices} device(s), "
           f"fewer than {target_blocks}: {block:g} s blocks give {got}"
           + (f" (not below the {floor:g} s window)" if block == floor and floor > wanted else ""))
    return BlockChoice(block, configured, span, devices, got, why)


def shortfalls(y: np.ndarray, groups: np.ndarray, minimums: Sequence[int]) -> list[str]:
    """What rows `y` with blocks `groups` lack for the gate's sample minimums: (positives, negatives,
    positive blocks, negative blocks). Empty: enough to judge.

    >>> shortfalls(np.array([1, 0, 0]), np.array(["a", "a", "b"]), (1, 2, 1, 2))
    []
    >>> shortfalls(np.array([1, 0]), np.array(["a", "a"]), (2, 1, 1, 1))
    ['1 positives, need 2']
    """
    pos = y.astype(bool)
    have = (int(pos.sum()), int((~pos).sum()), len(set(groups[pos].tolist())), len(set(groups[~pos].tolist())))
    names = ("positives", "negatives", "positive blocks", "negative blocks")
    return [f"{h} {n}, need {m}" for h, n, m in zip(have, names, minimums, strict=True) if h < m]


def choose_method(block: BlockChoice, *, eval_y: np.ndarray, eval_groups: np.ndarray, all_y: np.ndarray,
                  all_groups: np.ndarray, all_devices: np.ndarray, minimums: Sequence[int],
                  max_folds: int) -> SplitPlan:
    """The frozen slice when it is enough to judge (or nothing is); k-fold by device when only all labelled
    rows are (and there are at least two devices)."""
    short = shortfalls(eval_y, eval_groups, minimums)
    if not short:
        return SplitPlan("frozen_slice", block, len(eval_y), 0, "the frozen slice has enough to judge")
    slice_short = "the frozen slice has " + "; ".join(short)
    devices = len(set(all_devices.tolist()))
    short_all = shortfalls(all_y, all_groups, minimums)
    if max_folds < 2 or devices < 2 or short_all:
        why = ("k-fold is off" if max_folds < 2 else f"only {devices} device(s): no k-fold by device" if devices < 2
               else "all labelled rows have " + "; ".join(short_all))
        return SplitPlan("frozen_slice", block, len(eval_y), 0, f"{slice_short}; {why}")
    folds = min(devices, max_folds)
    return SplitPlan("device_kfold", block, len(all_y), folds,
                     f"{slice_short}: judged by {folds}-fold cross-evaluation by device on all {len(all_y)} rows")


def device_folds(devices: np.ndarray, k: int) -> list[np.ndarray]:
    """`k` disjoint boolean masks over `devices`, whole devices per fold (sorted, dealt round-robin).

    >>> [m.tolist() for m in device_folds(np.array(["b", "a", "c", "a"]), 2)]
    [[False, True, True, True], [True, False, False, False]]
    """
    names = sorted(set(devices.tolist()))
    return [np.isin(devices, names[i::k]) for i in range(k)]
