"""Fit the regime statistics of feature set 2 (`shared.regimes`): k-means over the operating settings.

The number of regimes is the smallest k (up to `max_regimes`) whose k-means leaves less than `tolerance` of the
settings' total spread inside the clusters: C-MAPSS FD002's six flight conditions are found as six, while
FD001's single condition (its settings only jitter) stays one regime, since no k explains noise that well.
Each setting is divided by its spread first (a constant one by 1). A setting that only jitters around one value
while others move between regimes (a recorded set point with sensor noise) would weigh as much as they do after
that division, and its noise would keep every k above the tolerance: the regimes would merge into one. So only the
settings that cluster on their own (k-means on the one setting reaches the tolerance) are clustered; the others
sit at their mean in every centroid, which adds the same to a reading's distance from each regime and so never
decides one. Then every window sensor's mean and std per regime, over the same readings, in the window's sensor
order.
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
    centre = scaled.mean(axis=0, keepdims=True)
    centroids = centre
    alone = max(len(columns) * tolerance, 0.5 / max_regimes**2)  # see `_clusters`
    clustered = [j for j in range(len(columns)) if _clusters(scaled[:, j], seed, max_regimes, alone)]
    km = _fewest_clusters(scaled[:, clustered], seed, max_regimes, tolerance) if clustered else None
    if km is not None:
        found = km.cluster_centers_[np.argsort(km.cluster_centers_[:, 0], kind="stable")]
        centroids = np.repeat(centre, len(found), axis=0)  # a setting that does not cluster: its mean everywhere
        centroids[:, clustered] = found
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


STRUCTURE_SAMPLE = 20_000  # readings a setting's own clustering is judged on (seeded sample of more)


def _clusters(values: np.ndarray, seed: int, max_regimes: int, tolerance: float) -> bool:
    """Whether one (scaled) setting falls into at most `max_regimes` clusters that leave under `tolerance` of its
    spread inside them: a setting that moves between operating points, not one that only jitters (or is constant).

    `fit_regimes` passes the joint tolerance times the number of settings, or half of what uniform noise leaves in
    `max_regimes` clusters (1 / k^2, the least any one-humped spread leaves; a normal one leaves 3.5% in 8), if more.
    A setting whose clusters leave more than the joint tolerance times the number of settings would have kept the
    joint clustering above its tolerance at every k, so wherever all settings together found regimes, each passes
    here and the fit is what it was."""
    if len(values) > STRUCTURE_SAMPLE:
        values = np.random.default_rng(seed).choice(values, STRUCTURE_SAMPLE, replace=False)
    return _fewest_clusters(values[:, None], seed, max_regimes, tolerance) is not None


def _fewest_clusters(data: np.ndarray, seed: int, max_regimes: int, tolerance: float) -> KMeans | None:
    """k-means of `data` (rows) with the smallest k in 2..`max_regimes` that leaves at most `tolerance` of its spread
    inside the clusters; None if none does (or `data` does not vary)."""
    total = float(((data - data.mean(axis=0)) ** 2).sum())
    if total <= 0:
        return None
    for k in range(2, max_regimes + 1):
        km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(data)
        if km.inertia_ <= tolerance * total:
            return km
    return None
