"""Performance before the labels arrive: each version's expected recall, precision and false-alarm rate per cohort,
from the scores it served and its calibration (confidence-based performance estimation).

A version's manifest carries a calibration (`shared.manifest.Calibration`): an isotonic map of its scores to the
frequency of failure, fitted at retrain time on the frozen evaluation slice (labelled rows it did not train on).
For every window of the field's random sample (``reason == "random"``: every window with the same probability,
alarms included, so the sample is unbiased) that version served, ``p = calibration(score)`` is the chance the window
is a failure, and the version's decision is known. Summed over the windows:

    expected TP = Σ p · alarm      expected FP = Σ (1 - p) · alarm
    expected FN = Σ p · (1 - alarm)   expected TN = Σ (1 - p) · (1 - alarm)

and recall, precision, false-alarm rate and F1 follow. No label is needed, so the figures exist from the first
minutes of a rollout. They hold while the score -> probability map holds: a shift that moves scores is seen
(the sample's scores move), a shift that breaks the map (a new failure mode the model scores low) is not, which is
what realized performance (`hub.training.performance`) catches once labels arrive. Each estimate is shown beside the
realized figures of the same version and scope when there are any, with the difference (the estimate's error).

Pure: `hub.training.service.performance` reads the samples, manifests and labels.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from hub.store.rows import PredictionRow
from hub.training.performance import RealizedPerformance, json_finite
from shared.manifest import Calibration

EstimateStatus = Literal["ok", "no_calibration", "too_few_samples"]
FIGURES = ("recall", "precision", "false_alarm_rate", "f1")


def calibrated(calibration: Calibration, scores: np.ndarray) -> np.ndarray:
    """Each score's probability of a failure: linear between the calibration's knots, flat beyond them.

    >>> cal = Calibration(x=[0.2, 0.6], y=[0.0, 0.8], fitted_on="eval", n=10, n_positive=4)
    >>> [round(p, 6) for p in calibrated(cal, np.array([0.0, 0.4, 0.9])).tolist()]
    [0.0, 0.4, 0.8]
    """
    return np.interp(np.asarray(scores, dtype=np.float64), calibration.x, calibration.y)


def expected_figures(p: np.ndarray, alarm: np.ndarray) -> dict[str, float | None]:
    """Expected recall, precision, false-alarm rate and F1 of decisions `alarm` on windows failing with chance `p`.

    >>> round(expected_figures(np.array([0.9, 0.1, 0.5, 0.0]), np.array([True, False, True, False]))["recall"], 6)
    0.933333
    """
    p, a = np.asarray(p, dtype=np.float64), np.asarray(alarm, dtype=bool)
    tp, fp = float(np.sum(p[a])), float(np.sum(1.0 - p[a]))
    fn, tn = float(np.sum(p[~a])), float(np.sum(1.0 - p[~a]))
    return rates(tp, fp, fn, tn)


def rates(tp: float, fp: float, fn: float, tn: float) -> dict[str, float | None]:
    """Recall, precision, false-alarm rate and F1 of (possibly expected) counts; None where undefined.

    >>> rates(8, 2, 2, 88)["f1"]
    0.8
    """
    recall = tp / (tp + fn) if tp + fn > 0 else None
    precision = tp / (tp + fp) if tp + fp > 0 else None
    far = fp / (fp + tn) if fp + tn > 0 else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else None
    return {"recall": recall, "precision": precision, "false_alarm_rate": far, "f1": f1}


@dataclass(frozen=True)
class PerformanceEstimate:
    """One version in one scope (``fleet`` or ``cohort:<name>``): the label-free estimate and, once labels came
    back, the realized figures and the estimate's error (estimate - realized)."""

    version: str
    scope: str
    status: EstimateStatus
    samples: int  # random-sample windows the estimate is over
    alarms: int
    expected_failures: float
    estimated: dict[str, float | None]
    calibrated_on: str | None
    realized: dict[str, float | None] | None = None
    labels: int = 0  # labels behind the realized figures
    error: dict[str, float | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        return json_finite(asdict(self))


def realized_rates(r: RealizedPerformance) -> dict[str, float | None]:
    """The realized figures as `rates` (precision and F1 from the labelled alarms and misses)."""
    caught = r.failures - r.missed
    return rates(caught, r.false_alarms, r.missed, r.healthy - r.false_alarms)


def estimates(samples: Sequence[PredictionRow], cohort_of: Mapping[str, str],
              calibrations: Mapping[str, Calibration | None], realized: Sequence[RealizedPerformance], *,
              min_samples: int) -> list[PerformanceEstimate]:
    """Every (version, scope) the random `samples` cover, fleet-wide and per cohort (a device's cohort from
    `cohort_of`, else ``unknown``), sorted; `realized` figures of the same (version, scope) are set beside them."""
    groups: dict[tuple[str, str], list[PredictionRow]] = defaultdict(list)
    for s in samples:
        if s.reason != "random" or s.model_version is None or not math.isfinite(s.score):
            continue
        for scope in ("fleet", f"cohort:{cohort_of.get(s.device_id) or 'unknown'}"):
            groups[(s.model_version, scope)].append(s)
    known = {(r.version, r.scope): r for r in realized}
    out = []
    for (version, scope), rows in sorted(groups.items()):
        cal = calibrations.get(version)
        alarm = np.array([r.decision for r in rows], dtype=bool)
        empty: dict[str, float | None] = dict.fromkeys(FIGURES)
        if cal is None:
            status: EstimateStatus = "no_calibration"
            est, expected = empty, math.nan
        else:
            p = calibrated(cal, np.array([r.score for r in rows]))
            status = "ok" if len(rows) >= min_samples else "too_few_samples"
            est, expected = (expected_figures(p, alarm) if status == "ok" else empty), float(p.sum())
        r = known.get((version, scope))
        real = None if r is None else realized_rates(r)
        error = None if real is None or status != "ok" else {
            k: None if est[k] is None or real[k] is None else est[k] - real[k]  # type: ignore[operator]
            for k in FIGURES}
        out.append(PerformanceEstimate(version, scope, status, len(rows), int(alarm.sum()), expected, est,
                                       None if cal is None else cal.fitted_on, real,
                                       0 if r is None else r.failures + r.healthy, error))
    return out
