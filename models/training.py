"""Fit a failure classifier, choose its decision threshold, and measure it overall and per cohort.

Only model families that skl2onnx converts faithfully are offered (HistGradientBoosting is not: its
converter fails with the pinned skl2onnx/onnx). Scores are the positive-class probability; a row is
flagged when ``score >= threshold``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.metrics import roc_auc_score

from models.errors import TrainingError
from shared.errors import ConfigError

ParamValue = float | int | str | None


class Classifier(Protocol):
    """What the rest of models/ needs of a fitted scikit-learn classifier."""

    classes_: np.ndarray

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...

# Defaults chosen for the simulator's fleet: about 2 s on one core for ~20k rows, near-best holdout F1.
DEFAULT_PARAMS: dict[str, dict[str, ParamValue]] = {
    "gbc": {
        "n_estimators": 120,
        "learning_rate": 0.1,
        "max_depth": 3,
        "subsample": 0.5,
        "max_features": 0.3,
        "min_samples_leaf": 10,
    },
    "rf": {"n_estimators": 100, "max_depth": 10, "min_samples_leaf": 5, "max_features": "sqrt"},
}
FAMILIES = tuple(DEFAULT_PARAMS)


def model_params(family: str, params: Mapping[str, ParamValue] | None = None) -> dict[str, ParamValue]:
    """The family's default hyper-parameters updated with `params`: what gets fitted and recorded."""
    if family not in DEFAULT_PARAMS:
        raise ConfigError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    return {**DEFAULT_PARAMS[family], **(params or {})}


def train_classifier(
    X: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    sample_weight: np.ndarray | None = None,
    family: str = "gbc",
    params: Mapping[str, ParamValue] | None = None,
) -> Classifier:
    """Fit a binary classifier of `family` ("gbc" or "rf") on float32 features and 0/1 labels.

    Deterministic under `seed` (single-threaded). Raises TrainingError when `y` holds one class only.
    """
    X, y = _check_xy(X, y)
    if np.unique(y).size != 2:
        raise TrainingError("training labels must contain both classes (0 and 1)")
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        if sample_weight.shape != y.shape or np.any(sample_weight < 0) or not np.all(np.isfinite(sample_weight)):
            raise TrainingError("sample_weight must be finite, non-negative and one per row")
    kwargs = model_params(family, params)
    if family == "gbc":
        estimator = GradientBoostingClassifier(random_state=seed, **kwargs)
    else:
        estimator = RandomForestClassifier(random_state=seed, n_jobs=1, **kwargs)
    estimator.fit(X, y, sample_weight=sample_weight)
    return estimator


def positive_scores(estimator: Classifier, X: np.ndarray) -> np.ndarray:
    """The estimator's probability of class 1 for each row, as float64."""
    classes = list(estimator.classes_)
    if classes != [0, 1]:
        raise TrainingError(f"expected a binary 0/1 classifier, got classes {classes}")
    return np.asarray(estimator.predict_proba(np.asarray(X, dtype=np.float32))[:, 1], dtype=np.float64)


def select_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The threshold that maximises F1 of ``scores >= threshold`` on validation data.

    It sits halfway between the lowest flagged score and the next lower one, away from any observed
    score, so float32 rounding in ONNX does not flip decisions. Ties prefer the higher threshold.
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.size == 0:
        raise TrainingError("need one score per label, and at least one")
    if not y.any():
        raise TrainingError("validation labels have no positives: cannot choose a threshold")
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    distinct = np.flatnonzero(np.diff(s_sorted) != 0)  # last index of each group of equal scores
    cut = np.append(distinct, s.size - 1)
    tp = np.cumsum(y_sorted)[cut]
    flagged = cut + 1
    f1 = 2.0 * tp / (flagged + y.sum())
    best = int(np.argmax(f1))
    upper = s_sorted[cut[best]]
    lower = s_sorted[cut[best] + 1] if cut[best] + 1 < s.size else 0.0
    return float(np.clip((upper + lower) / 2.0, 0.0, 1.0))


def classification_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """precision, recall, f1, false_alarm_rate (FP / negatives), roc_auc, n, n_positive, positive_rate.

    A ratio with a zero denominator is 0.0; roc_auc is left out when only one class is present.
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    pred = s >= threshold
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, n_pos)
    out = {
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2.0 * precision * recall, precision + recall),
        "false_alarm_rate": _ratio(fp, n_neg),
        "n": float(y.size),
        "n_positive": float(n_pos),
        "positive_rate": _ratio(int(pred.sum()), y.size),
    }
    if n_pos and n_neg:
        out["roc_auc"] = float(roc_auc_score(y, s))
    return out


def cohort_metrics(
    y_true: np.ndarray, scores: np.ndarray, threshold: float, cohorts: np.ndarray
) -> dict[str, dict[str, float]]:
    """`classification_metrics` for each distinct value of `cohorts` (e.g. ``site/asset_type``)."""
    y, s, c = np.asarray(y_true), np.asarray(scores), np.asarray(cohorts)
    return {
        str(name): classification_metrics(y[c == name], s[c == name], threshold)
        for name in sorted(set(c.tolist()))
    }


def _check_xy(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise TrainingError(f"X must be (n, features) and y (n,), got {X.shape} and {y.shape}")
    if not np.all(np.isfinite(X)):
        raise TrainingError("X contains NaN or infinite values")
    if not np.all((y == 0) | (y == 1)):
        raise TrainingError("y must hold 0/1 labels")
    return X, y.astype(np.int64)


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0
