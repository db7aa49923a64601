"""Judge a candidate against the incumbent: both ONNX artifacts scored by onnxruntime on the same frozen
slice, the candidate's single-window latency, and the pure gate (`hub.gate.verdict.evaluate_gate`) over the numbers.

Scores come from the ONNX files, not from scikit-learn: the gate judges what devices would run.
No store: the slice and both artifacts are passed in (the latency is measured with a perf counter, not read
from a clock).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hub.gate.verdict import (
    FarFloor,
    GateConfig,
    GateDecision,
    GateInput,
    ParityNumbers,
    evaluate_gate,
    metrics_on_slice,
    paired_slice,
)
from hub.training.dataset import EvalSet, cohort_counts
from models.onnx_export import ParityReport, onnx_scores, onnx_session

_WARMUP_RUNS = 20


def score(onnx_bytes: bytes, X: np.ndarray) -> np.ndarray:
    """Failure probabilities of `X` from a single-threaded onnxruntime session (empty X: no scores)."""
    if X.shape[0] == 0:
        return np.empty(0, dtype=np.float64)
    return onnx_scores(onnx_session(onnx_bytes), X)


def latency_p99_ms(onnx_bytes: bytes, X: np.ndarray, *, runs: int) -> float:
    """p99 wall time (ms) of one single-window inference, on one thread, after a warm-up (as on a gateway).

    Rows of `X` are used in turn; without rows a zero window is timed.
    """
    session = onnx_session(onnx_bytes)
    name = session.get_inputs()[0].name
    rows = np.ascontiguousarray(X if X.shape[0] else np.zeros((1, X.shape[1]), np.float32), dtype=np.float32)
    for i in range(_WARMUP_RUNS):
        session.run(None, {name: rows[i % rows.shape[0] : i % rows.shape[0] + 1]})
    times = np.empty(runs, dtype=np.float64)
    for i in range(runs):
        window = rows[i % rows.shape[0] : i % rows.shape[0] + 1]
        start = time.perf_counter()
        session.run(None, {name: window})
        times[i] = time.perf_counter() - start
    return float(np.percentile(times, 99) * 1000.0)


@dataclass(frozen=True)
class GateRun:
    """A gate decision and the record kept with it in the registry (every number it used)."""

    decision: GateDecision
    record: dict[str, Any]
    candidate_scores: np.ndarray
    incumbent_scores: np.ndarray


def gate_candidate(
    evaluation: EvalSet,
    *,
    candidate_onnx: bytes,
    candidate_threshold: float,
    incumbent_onnx: bytes,
    incumbent_threshold: float,
    incumbent_version: str,
    parity: ParityReport,
    config: GateConfig,
    latency_runs: int,
    far_floor: FarFloor | None = None,
    candidate_scores: np.ndarray | None = None,
    split: Mapping[str, Any] | None = None,
    incumbent_X: np.ndarray | None = None,
) -> GateRun:
    """Score both artifacts on `evaluation`, time the candidate, and run the gate (`far_floor`: the
    incumbent's false-alarm rate before its drift, `hub.training.far_floor`).

    `candidate_scores`: the candidate side's scores when they do not come from its artifact (out-of-fold
    scores of a k-fold cross-evaluation, `hub.training.crossval`); `split`: how the rows were chosen, recorded.
    `incumbent_X`: the incumbent's own features of the same rows when they differ from the candidate's
    (``evaluation.X``): a candidate with regime statistics learned from the field is judged on the rows restated
    under them, the incumbent on what it was scored with (`hub.training.regimes`).
    """
    if incumbent_X is not None and incumbent_X.shape[0] != len(evaluation):
        raise ValueError(f"incumbent_X has {incumbent_X.shape[0]} rows; the slice has {len(evaluation)}")
    s_cand = score(candidate_onnx, evaluation.X) if candidate_scores is None else candidate_scores
    s_inc = score(incumbent_onnx, evaluation.X if incumbent_X is None else incumbent_X)
    cohorts = evaluation.cohort if len(evaluation) else None
    thresholds = (candidate_threshold, incumbent_threshold)
    cand, inc, tables = metrics_on_slice(evaluation.y, s_cand, s_inc, thresholds, cohorts)
    paired = paired_slice(evaluation.y, s_cand, s_inc, thresholds, blocks=evaluation.groups, cohorts=cohorts)
    latency = latency_p99_ms(candidate_onnx, evaluation.X, runs=latency_runs)
    inp = GateInput(
        candidate=cand,
        incumbent=inc,
        parity=ParityNumbers(parity.max_abs_diff, parity.label_flips, parity.passed),
        latency_p99_ms=latency,
        candidate_cohorts=tables.candidate,
        incumbent_cohorts=tables.incumbent,
        paired=paired,
        far_floor=far_floor,
    )
    decision = evaluate_gate(inp, config)
    record = {
        **decision.to_dict(),
        "incumbent_version": incumbent_version,
        "thresholds": {"candidate": candidate_threshold, "incumbent": incumbent_threshold},
        "latency_p99_ms": latency,
        "latency_runs": latency_runs,
        "parity": parity.as_dict(),
        "slice": {"n": len(evaluation), "n_positive": int(evaluation.y.sum()),
                  "cohorts": dict(cohort_counts(evaluation.cohort, evaluation.y))},
        "candidate_cohorts": {k: asdict(v) for k, v in tables.candidate.items()},
        "incumbent_cohorts": {k: asdict(v) for k, v in tables.incumbent.items()},
        "config": asdict(config),
        "far_floor": None if far_floor is None else asdict(far_floor),
        "split": None if split is None else dict(split),
    }
    if incumbent_X is not None:
        record["features"] = "own"  # each model scored on its own features of the slice's rows
    return GateRun(decision, _json_safe(record), s_cand, s_inc)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj
