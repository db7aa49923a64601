"""Window feature extraction: the one implementation used by training and by inference (numpy only).

Feature set 1 (the default): a window is ``size`` consecutive readings of ``len(sensors)`` sensors. For each
sensor we compute ``mean, std, min, max, last, slope`` (slope: least-squares change per reading). Features are ordered
sensor-major: ``[s0.mean, s0.std, …, s0.slope, s1.mean, …]``.

Feature set 2 (`REGIMES`): each reading is first normalised by its operating regime (`shared.regimes`, the
statistics in the manifest), the window features are taken of the normalised readings, and the unit's history
beyond the window follows them (`shared.history`: 15- and 30-reading means, an EWM per sensor, time in
service). `series_features` computes either set over one unit's series for training; the agent computes the
same incrementally.

>>> import numpy as np
>>> extract(np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0]])).astype(float).round(3).tolist()
[2.0, 0.816, 1.0, 3.0, 3.0, 1.0, 10.0, 0.0, 10.0, 10.0, 10.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import numpy as np
from msgspec import Meta

from shared.history import history_features, history_names, n_history
from shared.regimes import RegimeStats, RegimeTransform, setting_columns
from shared.wire import Wire

STATS = ("mean", "std", "min", "max", "last", "slope")
FEATURE_SET_VERSION = 1  # bump when STATS or their definitions change: labels older than this are stale
REGIMES = 2  # regime-normalised window features + history features (`shared.regimes`, `shared.history`)
FEATURE_SETS = (FEATURE_SET_VERSION, REGIMES)


class WindowSpec(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How readings become windows: which sensors, how many readings, and how far to slide."""

    sensors: Annotated[list[str], Meta(min_length=1)]
    size: Annotated[int, Meta(ge=2, le=10_000)]
    step: Annotated[int, Meta(ge=1, le=10_000)]
    feature_set_version: int = FEATURE_SET_VERSION

    def __post_init__(self) -> None:  # constructing one checks its bounds too, not only decoding
        if not self.sensors:
            raise ValueError("a window needs at least one sensor")
        if len(set(self.sensors)) != len(self.sensors):
            raise ValueError("sensor names must be unique")
        if not 2 <= self.size <= 10_000 or not 1 <= self.step <= 10_000:
            raise ValueError("a window's size lies in [2, 10000] and its step in [1, 10000]")
        if self.feature_set_version not in FEATURE_SETS:
            raise ValueError(f"feature set {self.feature_set_version} is unknown; known: {FEATURE_SETS}")

    @property
    def n_features(self) -> int:
        return n_features(len(self.sensors), self.feature_set_version)


def n_features(n_sensors: int, version: int = FEATURE_SET_VERSION) -> int:
    window = n_sensors * len(STATS)
    return window + n_history(n_sensors) if version == REGIMES else window


def feature_names(sensors: Sequence[str], version: int = FEATURE_SET_VERSION) -> list[str]:
    """Names of the features of feature set `version` (`extract`'s, then for set 2 the history's), in order."""
    names = [f"{sensor}.{stat}" for sensor in sensors for stat in STATS]
    return names + history_names(sensors) if version == REGIMES else names


_SLOPE_CACHE: dict[int, np.ndarray] = {}


def _slope_weights(size: int) -> np.ndarray:
    weights = _SLOPE_CACHE.get(size)
    if weights is None:
        t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
        weights = t / float(t @ t)
        _SLOPE_CACHE[size] = weights
    return weights


def extract(windows: np.ndarray) -> np.ndarray:
    """Features of one window ``(size, sensors)`` or a batch ``(n, size, sensors)``, as float32.

    Returns shape ``(sensors * 6,)`` or ``(n, sensors * 6)``. Computed in float64 and rounded once,
    so a window gives the same features alone or inside a batch.
    """
    x = np.asarray(windows, dtype=np.float64)
    if x.ndim not in (2, 3) or x.shape[-2] < 2:
        raise ValueError(f"expected (size>=2, sensors) or (n, size>=2, sensors), got shape {x.shape}")
    n = x.shape[-2]
    # The same ufunc calls np.mean and np.std make (so the same bits), without their Python wrappers and
    # with the mean computed once: this runs once per window on the agent.
    out = np.empty((len(STATS), *x.shape[:-2], x.shape[-1]), dtype=np.float64)  # stat-major
    mean, var = out[0], out[1]
    np.add.reduce(x, axis=-2, out=mean)
    np.true_divide(mean, n, out=mean)
    dev = np.subtract(x, mean[..., None, :])
    np.multiply(dev, dev, out=dev)
    np.add.reduce(dev, axis=-2, out=var)
    np.true_divide(var, n, out=var)
    np.sqrt(var, out=var)
    np.minimum.reduce(x, axis=-2, out=out[2])
    np.maximum.reduce(x, axis=-2, out=out[3])
    out[4] = x[..., -1, :]
    np.matmul(_slope_weights(n), x, out=out[5])
    features = out.transpose((*range(1, out.ndim), 0)).astype(np.float32, order="C")
    return features.reshape(*x.shape[:-2], -1)


def sliding_windows(readings: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """All windows of a ``(time, sensors)`` series as a ``(n, size, sensors)`` view, stepping by spec.step."""
    x = np.asarray(readings)
    if x.shape[0] < spec.size:
        return np.empty((0, spec.size, x.shape[1]), dtype=x.dtype)
    view = np.lib.stride_tricks.sliding_window_view(x, spec.size, axis=0)  # (n, sensors, size)
    return view[:: spec.step].transpose(0, 2, 1)


def series_features(readings: np.ndarray, spec: WindowSpec,
                    regimes: RegimeStats | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features of every window of one unit's ``(time, sensors)`` series (columns in ``spec.sensors`` order) and
    the index of each window's last reading: what an agent emits for that unit, in batch.

    Feature set 2 needs the `regimes` statistics (the manifest's); set 1 ignores them.
    """
    x = np.asarray(readings, dtype=np.float64)
    ends = np.arange(spec.size - 1, x.shape[0], spec.step, dtype=np.int64)
    if not len(ends):
        return np.empty((0, spec.n_features), dtype=np.float32), ends
    if spec.feature_set_version != REGIMES:
        return extract(sliding_windows(x, spec)).reshape(len(ends), -1), ends
    if regimes is None:
        raise ValueError("feature set 2 needs regime statistics")
    z = RegimeTransform(regimes, setting_columns(regimes, spec.sensors))(x)
    window = extract(sliding_windows(z, spec)).reshape(len(ends), -1)
    history = history_features(z)[ends].astype(np.float32)
    return np.concatenate([window, history], axis=1), ends


def context_features(readings: np.ndarray, spec: WindowSpec, regimes: RegimeStats, service: int) -> np.ndarray:
    """Feature set 2's features of the window that ends at the last of one unit's raw `readings` (``(time,
    sensors)``, oldest first, columns in ``spec.sensors`` order, at least ``spec.size`` of them), normalised by
    `regimes`, when the unit had seen `service` readings before the first of them.

    With the whole history (`service` 0) this is `series_features`'s last row, bit for bit; with
    `shared.history.CONTEXT` readings before the window (what an agent's raw window carries,
    `shared.messages.RawWindow`) the 15- and 30-reading means are exact and the EWM, started at the first reading
    given, within 3e-6 of the agent's. So the hub can restate a field window under regime statistics other than
    those it was scored with.
    """
    x = np.asarray(readings, dtype=np.float64)
    if spec.feature_set_version != REGIMES:
        raise ValueError("context features are feature set 2's")
    if x.ndim != 2 or x.shape[1] != len(spec.sensors) or x.shape[0] < spec.size:
        raise ValueError(f"need at least {spec.size} readings of {len(spec.sensors)} sensors, got shape {x.shape}")
    if service < 0:
        raise ValueError("service counts readings: it is not negative")
    z = RegimeTransform(regimes, setting_columns(regimes, spec.sensors))(x)
    window = extract(z[-spec.size:]).reshape(-1)
    history = history_features(z)[-1]
    history[-1] += service
    return np.concatenate([window, history.astype(np.float32)])


def histogram_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of `values` in the open-ended bins defined by `edges`: ``len(edges) + 1`` bins.

    Bin i holds ``edges[i-1] <= v < edges[i]``; the first and last bins are open-ended, so every finite
    value is counted. This is the sketch agents send and the hub merges.
    """
    idx = np.searchsorted(edges, values, side="right")
    return np.bincount(idx, minlength=len(edges) + 1)
