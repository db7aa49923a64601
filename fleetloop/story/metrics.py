"""How well the fleet caught failures over time: the loop (whatever model served each window) against a frozen v1.

Every window the agents scored is judged against the simulator's ground truth (the machine fails within the
model's horizon of the window's last reading; `sim.technicians.GroundTruth`), not against the technicians' noisy
labels. The loop's alarm is the device's own decision; the frozen model's is v1's ONNX run offline with
onnxruntime on the same logged features. Recall is the share of failing windows alarmed; the false-alarm rate
(FAR) the share of healthy windows alarmed.

Periods: *healthy* (before the drift reached any device), *before the fix* (from the drift until the fleet
served the promoted version) and *after the fix* (from then on, windows the promoted version scored).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fleetloop.fleet.logs import DeviceLog
from sim.technicians import GroundTruth, SimDevice

__all__ = ["Accuracy", "Rates", "ScoredWindows", "accuracy", "score_windows"]


@dataclass(frozen=True)
class Rates:
    """Recall and false-alarm rate on `n_pos` failing and `n_neg` healthy windows (NaN without any)."""

    recall: float
    far: float
    n_pos: int
    n_neg: int

    @classmethod
    def of(cls, truth: np.ndarray, alarm: np.ndarray) -> Rates:
        """The rates of `alarm` against `truth` (boolean arrays of one length).

        >>> Rates.of(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool))
        Rates(recall=0.5, far=0.5, n_pos=2, n_neg=2)
        """
        pos, neg = int(truth.sum()), int((~truth).sum())
        recall = float((alarm & truth).sum() / pos) if pos else math.nan
        far = float((alarm & ~truth).sum() / neg) if neg else math.nan
        return cls(recall, far, pos, neg)

    def to_dict(self) -> dict[str, Any]:
        return {"recall": _r(self.recall), "far": _r(self.far), "n_pos": self.n_pos, "n_neg": self.n_neg}


@dataclass(frozen=True, eq=False)
class ScoredWindows:
    """Every logged window of the fleet, in one set of arrays."""

    device_id: np.ndarray  # str
    ts: np.ndarray  # float64, wall clock of the prediction
    model_version: np.ndarray  # str
    truth: np.ndarray  # bool: the machine fails within the horizon
    served: np.ndarray  # bool: the alarm the device raised
    frozen: np.ndarray  # bool: the alarm the frozen model gives offline

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def select(self, mask: np.ndarray) -> ScoredWindows:
        return ScoredWindows(self.device_id[mask], self.ts[mask], self.model_version[mask], self.truth[mask],
                             self.served[mask], self.frozen[mask])


def score_windows(logs: Sequence[DeviceLog], devices: Mapping[str, SimDevice], *, horizon: int,
                  frozen_onnx: bytes, frozen_threshold: float, truth: GroundTruth | None = None) -> ScoredWindows:
    """Judge every window in `logs` against the ground truth, with the served and the frozen model's alarms."""
    from models.onnx_export import onnx_scores, onnx_session  # onnxruntime, only when the story is over

    truth = truth if truth is not None else GroundTruth()
    session = onnx_session(frozen_onnx)
    parts: list[tuple[np.ndarray, ...]] = []
    for log in logs:
        if not len(log):
            continue
        device = devices[log.device_id]
        steps = np.rint((log.window_end - device.start_ts) / device.period).astype(np.int64)
        fails = truth.rul_of(device, np.maximum(steps, 0)) <= horizon
        frozen = onnx_scores(session, log.features) >= frozen_threshold
        parts.append((np.full(len(log), log.device_id), log.ts, log.model_version, fails, log.decision, frozen))
    if not parts:
        empty = np.empty(0)
        return ScoredWindows(empty.astype(str), empty, empty.astype(str), empty.astype(bool), empty.astype(bool),
                             empty.astype(bool))
    cols = [np.concatenate([p[i] for p in parts]) for i in range(6)]
    order = np.argsort(cols[1], kind="stable")
    return ScoredWindows(*(c[order] for c in cols))


@dataclass(frozen=True, eq=False)
class Accuracy:
    """Rates per time bucket for the loop and the frozen model, and per story period."""

    bucket_s: float
    t: np.ndarray  # bucket centres, seconds since the story's origin
    served: tuple[Rates, ...]  # per bucket, the whole fleet
    frozen: tuple[Rates, ...]
    periods: dict[str, dict[str, Rates]]  # period -> {"served", "frozen"} -> rates
    drifted_periods: dict[str, dict[str, Rates]]  # the same on the drifted devices only
    drifted_served: tuple[Rates, ...] = ()  # per bucket, the drifted devices only
    drifted_frozen: tuple[Rates, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "bucket_s": self.bucket_s,
            "periods": {p: {k: r.to_dict() for k, r in v.items()} for p, v in self.periods.items()},
            "drifted_devices": {p: {k: r.to_dict() for k, r in v.items()} for p, v in self.drifted_periods.items()},
        }


def accuracy(windows: ScoredWindows, *, origin: float, bucket_s: float, injected_at: float | None,
             recovered_at: float | None, promoted: str | None, drifted: Sequence[str] = (),
             min_positives: int = 5) -> Accuracy:
    """Bucketed and per-period rates, for the fleet and for the `drifted` devices alone. A bucket with fewer than
    `min_positives` failing windows gets no recall."""
    t = windows.ts - origin
    edges = np.arange(int(float(t.max()) // bucket_s) + 1 if len(t) else 0) * bucket_s
    on_drifted = np.isin(windows.device_id, list(drifted))
    drifted_only = windows.select(on_drifted)
    series = [_buckets(windows, t, edges, bucket_s, min_positives),
              _buckets(drifted_only, t[on_drifted], edges, bucket_s, min_positives)]
    return Accuracy(bucket_s, edges + bucket_s / 2, *series[0], _periods(windows, injected_at, recovered_at, promoted),
                    _periods(drifted_only, injected_at, recovered_at, promoted), *series[1])


def _buckets(w: ScoredWindows, t: np.ndarray, edges: np.ndarray, bucket_s: float,
             min_positives: int) -> tuple[tuple[Rates, ...], tuple[Rates, ...]]:
    served: list[Rates] = []
    frozen: list[Rates] = []
    for lo in edges:
        mask = (t >= lo) & (t < lo + bucket_s)
        s, f = Rates.of(w.truth[mask], w.served[mask]), Rates.of(w.truth[mask], w.frozen[mask])
        if s.n_pos < min_positives:
            s, f = Rates(math.nan, s.far, s.n_pos, s.n_neg), Rates(math.nan, f.far, f.n_pos, f.n_neg)
        served.append(s)
        frozen.append(f)
    return tuple(served), tuple(frozen)


def _periods(w: ScoredWindows, injected_at: float | None, recovered_at: float | None,
             promoted: str | None) -> dict[str, dict[str, Rates]]:
    masks: dict[str, np.ndarray] = {}
    if injected_at is not None:
        masks["healthy"] = w.ts < injected_at
        end = recovered_at if recovered_at is not None else math.inf
        masks["before_fix"] = (w.ts >= injected_at) & (w.ts < end) & (w.model_version != (promoted or ""))
    if recovered_at is not None and promoted is not None:
        masks["after_fix"] = (w.ts >= recovered_at) & (w.model_version == promoted)
    return {name: {"served": Rates.of(w.truth[m], w.served[m]), "frozen": Rates.of(w.truth[m], w.frozen[m])}
            for name, m in masks.items()}


def _r(x: float) -> float | None:
    return None if not math.isfinite(x) else round(x, 4)
