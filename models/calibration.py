"""Calibration of a model's scores: score -> probability of a failure, fitted on labelled rows it did not train on.

Isotonic regression (monotone, no shape assumed: a gradient-boosting model's scores on a shifted fleet are often far
from probabilities, and not in a sigmoid's way). The fit is stored as the knots of a piecewise-linear map
(`shared.manifest.Calibration`), which the hub applies with numpy alone (`hub.training.estimate`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from shared.manifest import Calibration

MIN_EACH_CLASS = 5
"""Fewer failures or healthy rows than this: no calibration (an isotonic fit on a handful of rows says nothing)."""


def fit_calibration(y: np.ndarray, scores: np.ndarray, fitted_on: Literal["eval", "validation"]) -> Calibration | None:
    """The isotonic map of `scores` to the frequency of ``y == 1``; None with fewer than `MIN_EACH_CLASS` of a class.

    >>> cal = fit_calibration(np.array([0] * 5 + [1] * 5), np.linspace(0, 1, 10), "eval")
    >>> cal.y[0], cal.y[-1], cal.n_positive
    (0.0, 1.0, 5)
    """
    from sklearn.isotonic import IsotonicRegression

    y = np.asarray(y, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(np.sum(y == 1))
    if n_pos < MIN_EACH_CLASS or y.size - n_pos < MIN_EACH_CLASS:
        return None
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(s, y)
    x_knots = np.asarray(iso.X_thresholds_, dtype=np.float64)
    y_knots = np.clip(np.maximum.accumulate(np.asarray(iso.y_thresholds_, dtype=np.float64)), 0.0, 1.0)
    return Calibration(x=[round(float(v), 9) for v in x_knots], y=[round(float(v), 9) for v in y_knots],
                       fitted_on=fitted_on, n=int(y.size), n_positive=n_pos)
