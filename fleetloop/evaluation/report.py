"""Score models on the evaluation engines and report a run: one table for people, one JSON object for machines.

Every model is scored the same way: its ONNX file run by onnxruntime on the evaluation engines' windows (the
windows an agent emits, with the model's window spec), at the model's own threshold, through
`models.training.classification_metrics`.

The loop's model is also judged without labels (`label_free_estimate`): its calibration (fitted at retrain time on
the hub's frozen slice) turns its scores on the evaluation windows into an expected F1 (`hub.training.estimate`),
reported as ``estimated_f1`` beside the realized one, with ``estimate_error`` = estimated - realized.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hub.training.estimate import calibrated, expected_figures
from models.onnx_export import onnx_scores, onnx_session
from models.training import classification_metrics
from shared.manifest import ModelManifest

METRICS = (("f1", "F1"), ("recall", "recall"), ("false_alarm_rate", "false alarms"), ("roc_auc", "ROC-AUC"),
           ("precision", "precision"))
JSON_METRICS = {"f1": "f1", "recall": "recall", "false_alarm_rate": "far", "roc_auc": "auc", "precision": "precision"}


@dataclass(frozen=True)
class ModelScore:
    """One model's numbers on the evaluation engines."""

    role: str  # static, loop, oracle
    version: str
    threshold: float
    metrics: dict[str, float]
    note: str = ""


def score_model(role: str, version: str, onnx_bytes: bytes, threshold: float, X: np.ndarray, y: np.ndarray,
                note: str = "") -> ModelScore:
    """Score `X` with a real onnxruntime session and measure it against `y` at `threshold`."""
    scores = onnx_scores(onnx_session(onnx_bytes), X)
    return ModelScore(role, version, threshold, classification_metrics(y, scores, threshold), note)


def label_free_estimate(manifest: ModelManifest, onnx_bytes: bytes, X: np.ndarray,
                        realized: ModelScore) -> dict[str, float | str | None]:
    """The model's F1, recall and false-alarm rate on `X` estimated from its scores and calibration alone, and the
    F1 estimate's error against `realized` (None without a calibration: a version the hub did not retrain)."""
    keys = ("estimated_f1", "estimated_recall", "estimated_far", "estimate_error")
    if manifest.calibration is None or X.shape[0] == 0:
        return {**dict.fromkeys(keys), "estimate_calibrated_on": None}
    scores = onnx_scores(onnx_session(onnx_bytes), X)
    est = expected_figures(calibrated(manifest.calibration, scores), scores >= manifest.threshold)
    f1, real = est["f1"], realized.metrics.get("f1")
    return {"estimated_f1": _num(f1), "estimated_recall": _num(est["recall"]),
            "estimated_far": _num(est["false_alarm_rate"]),
            "estimate_error": None if f1 is None or real is None else _num(f1 - real),
            "estimate_calibrated_on": manifest.calibration.fitted_on}


@dataclass
class EvalReport:
    """What a run measured. Cycles count readings replayed per gateway (the fleet clock: one per engine cycle)."""

    mode: str
    scores: list[ModelScore]
    eval_windows: int
    eval_positives: int
    predictions: int
    labels_sent: int
    labels_used: int
    retrains: int
    retrains_passed: int
    rollouts_completed: int
    recovery_cycles: int | None
    final_cycles: int | None
    fleet_cycles: int
    drift_cycles: int | None
    wall_s: float
    details: dict[str, Any] = field(default_factory=dict)

    def score(self, role: str) -> ModelScore | None:
        return next((s for s in self.scores if s.role == role), None)

    @property
    def labels_used_fraction(self) -> float:
        return self.labels_used / self.predictions if self.predictions else 0.0

    def table(self) -> str:
        """The result as aligned text: the models, then the loop's numbers."""
        head = ("model", "version", *(name for _, name in METRICS), "note")
        rows = [head]
        for s in self.scores:
            rows.append((s.role, s.version, *(_fmt(s.metrics.get(k)) for k, _ in METRICS), s.note))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        used = f"{self.labels_used:,} of {self.predictions:,} predictions ({100 * self.labels_used_fraction:.1f}%)"
        facts = [
            ("evaluation windows", f"{self.eval_windows:,} ({self.eval_positives:,} within the failure horizon)"),
            ("labels consumed", used),
            ("labels sent", f"{self.labels_sent:,} by technicians"),
            ("label-free F1", _estimate(self.details)),
            ("retrains", f"{self.retrains} ({self.retrains_passed} passed the gate), "
                         f"{self.rollouts_completed} rollout(s) completed"),
            ("drift detected", _cycles(self.drift_cycles, "after the fleet started (nominal clock)")),
            ("recovery", _cycles(self.recovery_cycles, "from drift onset until every gateway served the loop's "
                                 "first model")),
            ("final model", _cycles(self.final_cycles, "until every gateway served the final model")),
            ("fleet replay", f"{self.fleet_cycles:,} cycles per gateway at most"),
            ("wall time", f"{self.wall_s:.1f} s"),
        ]
        width = max(len(k) for k, _ in facts)
        return "\n".join([*lines, "", *(f"{k.ljust(width)}  {v}" for k, v in facts)])

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode}
        for s in self.scores:
            for key, short in JSON_METRICS.items():
                out[f"{s.role}_{short}"] = _num(s.metrics.get(key))
            out[f"{s.role}_version"] = s.version
        out.update(
            labels_used_fraction=round(self.labels_used_fraction, 4), labels_used=self.labels_used,
            labels_sent=self.labels_sent, predictions=self.predictions, retrains=self.retrains,
            retrains_passed=self.retrains_passed, rollouts_completed=self.rollouts_completed,
            recovery_cycles=self.recovery_cycles, final_model_cycles=self.final_cycles,
            drift_detected_cycles=self.drift_cycles, fleet_cycles=self.fleet_cycles,
            eval_windows=self.eval_windows, eval_positives=self.eval_positives, wall_s=round(self.wall_s, 1),
            **self.details,
        )
        return out


def _fmt(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def _estimate(details: dict[str, Any]) -> str:
    f1, error = details.get("estimated_f1"), details.get("estimate_error")
    if f1 is None:
        return "none (the loop's model has no calibration)"
    return f"{f1:.3f} estimated for the loop's model from its scores alone (error {error:+.3f} against realized)"


def _cycles(value: int | None, what: str) -> str:
    return "not reached" if value is None else f"{value:,} cycles {what}"
