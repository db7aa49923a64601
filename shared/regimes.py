"""Operating regimes: which regime a reading was taken in, and each sensor normalised by its regime (numpy only).

Machines that run at several loads, speeds or altitudes shift every sensor with the regime, so a window of raw
readings mixes "which regime" with "how worn". Feature set 2 (`shared.features`) removes the regime first: a
reading's regime is the nearest centroid of its operating-setting columns (each setting divided by its `scale`
so that no one unit dominates), and every window sensor becomes ``(x - mean[regime]) / std[regime]``.

The statistics live in the manifest (`RegimeStats`, ``ModelManifest.regimes``); the training side fits them
(`models.regimes`, k-means from scikit-learn), the agent only applies them with `normalise`. One reading or a
batch gives the same bits: the same element-wise float64 operations, and the distance summed over three
settings in order.

>>> import numpy as np
>>> stats = RegimeStats(settings=["alt"], scale=[1.0], centroids=[[0.0], [10.0]],
...                     mean=[[0.0, 1.0], [10.0, 5.0]], std=[[1.0, 1.0], [1.0, 2.0]], counts=[1, 1])
>>> normalise(np.array([[0.5, 2.0], [9.0, 9.0]]), stats, [0]).round(2).tolist()
[[0.5, 1.0], [-1.0, 2.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import numpy as np
from msgspec import Meta

from shared.wire import Wire, finite

MAX_REGIMES = 64
MIN_STD = 1e-6  # a sensor constant within a regime is centred but not scaled (std taken as 1)


class RegimeStats(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Regime centroids over the operating-setting columns and each regime's per-sensor mean and std.

    `settings` names window sensors; `centroids` is ``(regimes, settings)`` in the readings' units and `scale`
    divides each setting before distances are taken; `mean` and `std` are ``(regimes, window sensors)`` in the
    window's sensor order; `counts` are the readings each regime was fitted on (for the record)."""

    settings: Annotated[list[str], Meta(min_length=1)]
    scale: list[float]
    centroids: Annotated[list[list[float]], Meta(min_length=1, max_length=MAX_REGIMES)]
    mean: list[list[float]]
    std: list[list[float]]
    counts: list[int]

    def __post_init__(self) -> None:
        k, s = len(self.centroids), len(self.settings)
        if len(set(self.settings)) != s or len(self.scale) != s or any(len(c) != s for c in self.centroids):
            raise ValueError("regime settings are unique, with one scale and one centroid coordinate each")
        if not all(v > 0 for v in self.scale):
            raise ValueError("regime setting scales must be positive")
        if len(self.mean) != k or len(self.std) != k or len(self.counts) != k:
            raise ValueError("one mean row, one std row and one count per regime")
        width = len(self.mean[0])
        if width == 0 or any(len(r) != width for r in (*self.mean, *self.std)):
            raise ValueError("every regime's mean and std rows have one value per window sensor")
        finite(self.scale, "regime scales")
        for row in (*self.centroids, *self.mean, *self.std):
            finite(row, "regime statistics")
        if any(v < 0 for r in self.std for v in r) or any(c < 0 for c in self.counts):
            raise ValueError("regime stds and counts are non-negative")

    @property
    def n_regimes(self) -> int:
        return len(self.centroids)

    @property
    def n_sensors(self) -> int:
        return len(self.mean[0])


class RegimeTransform:
    """`RegimeStats` as arrays, ready to normalise readings in a window's sensor order (`columns`: where each
    setting sits among the window sensors)."""

    __slots__ = ("centroids", "columns", "mean", "scale", "std")

    def __init__(self, stats: RegimeStats, columns: Sequence[int]) -> None:
        if len(columns) != len(stats.settings):
            raise ValueError("one column per regime setting")
        self.columns = np.asarray(columns, dtype=np.intp)
        self.scale = np.asarray(stats.scale, dtype=np.float64)
        self.centroids = np.asarray(stats.centroids, dtype=np.float64) / self.scale  # (k, s)
        self.mean = np.asarray(stats.mean, dtype=np.float64)
        std = np.asarray(stats.std, dtype=np.float64)
        self.std = np.where(std > MIN_STD, std, 1.0)

    def regimes(self, readings: np.ndarray) -> np.ndarray:
        """The regime of each reading of ``(..., sensors)``: the nearest centroid of its scaled settings."""
        x = np.asarray(readings, dtype=np.float64)
        settings = x[..., self.columns] / self.scale  # (..., s)
        diff = settings[..., None, :] - self.centroids  # (..., k, s)
        dist = diff[..., 0] * diff[..., 0]
        for j in range(1, diff.shape[-1]):  # summed in order: one reading or a batch, the same bits
            dist = dist + diff[..., j] * diff[..., j]
        return np.argmin(dist, axis=-1)

    def __call__(self, readings: np.ndarray) -> np.ndarray:
        """Readings ``(..., sensors)`` normalised by their regimes' statistics, float64."""
        x = np.asarray(readings, dtype=np.float64)
        r = self.regimes(x)
        return (x - self.mean[r]) / self.std[r]


def setting_columns(stats: RegimeStats, sensors: Sequence[str]) -> list[int]:
    """Where each of the stats' operating settings sits among `sensors`; ValueError when one is missing or the
    stats do not have one column per sensor."""
    missing = [s for s in stats.settings if s not in sensors]
    if missing:
        raise ValueError(f"regime settings {missing} are not among the window's sensors")
    if stats.n_sensors != len(sensors):
        raise ValueError(f"regime statistics have {stats.n_sensors} sensors; the window has {len(sensors)}")
    return [list(sensors).index(s) for s in stats.settings]


def normalise(readings: np.ndarray, stats: RegimeStats, columns: Sequence[int]) -> np.ndarray:
    """Readings ``(..., sensors)`` normalised by their regimes (a one-off `RegimeTransform`)."""
    return RegimeTransform(stats, columns)(readings)
