"""K-fold cross-evaluation by device: every labelled row scored by a model fitted without its device's rows.

Used when the frozen slice is too small to judge but all labelled traffic is not (`hub.training.split`): the
gate then judges the retrain's *recipe* on every labelled row, paired with the incumbent on the same rows.
Each fold's model is fitted like the candidate (same family, parameters, seed, weights and base set), on the
candidate's fit rows minus the fold's devices; the rows are scored with the deployed candidate's threshold.
No store, no clock.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hub.training.dataset import Datasets
from hub.training.split import device_folds

Fit = Callable[[np.ndarray, np.ndarray, np.ndarray], object]
"""Fits one model on (X, y, sample_weight)."""
Score = Callable[[object, np.ndarray], np.ndarray]
"""Failure probabilities of rows under a fitted model."""


def out_of_fold_scores(data: Datasets, y: np.ndarray, fit_rows: np.ndarray, *, folds: int, fit: Fit,
                       score: Score) -> np.ndarray:
    """Scores of `data.labelled`, each from a model fitted on `fit_rows` of the training set (labels `y`) without
    the rows of its fold's devices (simulated rows are in every fold's fit)."""
    labelled = data.labelled
    if labelled is None:
        raise ValueError("k-fold cross-evaluation needs the labelled rows (Datasets.labelled)")
    ts = data.training
    devices = np.concatenate([np.full(len(ts.sim), ""), data.field_device_id]).astype(str)
    out = np.full(len(labelled), np.nan)
    X, w = ts.X, ts.weight
    for held in device_folds(labelled.device_id, folds):
        names = set(labelled.device_id[held].tolist())
        rows = fit_rows & ~np.isin(devices, list(names))
        model = fit(X[rows], y[rows], w[rows])
        out[held] = score(model, labelled.X[held])
    return out
