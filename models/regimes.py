"""Fit the regime statistics of feature set 2 (`shared.regimes`): k-means over the operating settings.

The number of regimes is the smallest k (up to `max_regimes`) whose k-means leaves less than `tolerance` of the
settings' total spread inside the clusters: C-MAPSS FD002's six flight conditions are found as six, while
FD001's single condition (its settings only jitter) stays one regime, since no k explains noise that well.
Each setting is divided by its spread first (a constant one by 1). Then every window sensor's mean and std per
regime, over the same readings, in the window's sensor order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from sklearn.cluster import KMeans

from models.errors import TrainingError
from shared.regimes import RegimeStats, RegimeTransform

DEFAULT_SETTINGS = ("op1", "op2", "op3")
MAX_REGIMES = 8
TOLERANCE = 0.001  # share of the settings' spread left within clusters


def fit_regimes(series: Iterable[np.ndarray], sensors: Sequence[str], *, settings: Sequence[str] = DEFAULT_SETTINGS,
                seed: int = 7, max_regimes: int = MAX_REGIMES, tolerance: float = TOLERANCE) -> RegimeStats:
    """Regime statistics of the readings `series` (each ``(time, len(sensors))``, columns in `sensors` order)."""
    x = np.concatenate([np.asarray(s, dtype=np.float64) for s in series], axis=0)
    if x.ndim != 2 or x.shape[1] != len(sensors) or x.shape[0] == 0:
        raise TrainingError(f"regimes need readings of {len(sensors)} sensors, got shape {x.shape}")
    missing = [s for s in settings if s not in sensors]
    if missing:
        raise TrainingError(f"regime settings {missing} are not among the window's sensors")
    columns = [list(sensors).index(s) for s in settings]
    raw = x[:, columns]
    spread = raw.std(axis=0)
    scale = np.where(spread > 1e-12, spread, 1.0)
    scaled = raw / scale
    total = float(((scaled - scaled.mean(axis=0)) ** 2).sum())
    centroids = scaled.mean(axis=0, keepdims=True)
    if total > 0:
        for k in range(2, max_regimes + 1):
            km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(scaled)
            if km.inertia_ <= tolerance * total:
                centroids = km.cluster_centers_[np.argsort(km.cluster_centers_[:, 0], kind="stable")]
                break
    provisional = RegimeStats(settings=list(settings), scale=scale.tolist(), centroids=(centroids * scale).tolist(),
                              mean=[[0.0] * len(sensors)] * len(centroids), std=[[1.0] * len(sensors)] * len(centroids),
                              counts=[0] * len(centroids))
    regime = RegimeTransform(provisional, columns).regimes(x)
    mean, std, counts = [], [], []
    for r in range(len(centroids)):
        mine = x[regime == r]
        counts.append(int(mine.shape[0]))
        mean.append(mine.mean(axis=0).tolist() if len(mine) else [0.0] * len(sensors))
        std.append(mine.std(axis=0).tolist() if len(mine) else [1.0] * len(sensors))
    return RegimeStats(settings=list(settings), scale=scale.tolist(), centroids=(centroids * scale).tolist(),
                       mean=mean, std=std, counts=counts)
