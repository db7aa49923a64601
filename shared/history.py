"""History features beyond the window, per unit: computed incrementally on the agent, in batch for training.

For each sensor (of the regime-normalised readings, `shared.regimes`): the mean of the last 15 and of the last
30 readings (of all readings so far while there are fewer), and an exponentially weighted mean (span
`EWM_SPAN`, starting at the first reading); then one more feature, time in service: the readings seen for the
unit so far. Ordered ``[s0.mean15, s0.mean30, s0.ewm, s1.mean15, …, service]``.

`UnitHistory` is the agent's state for one unit (a double-written ring of the last 30 readings, the running
EWM and the count); `history_features` is the batch twin over one unit's whole series. Both reduce the same
contiguous ``(n, sensors)`` blocks along the same axis and update the EWM with the same operations, so they
give the same bits (a test holds them to it).

>>> import numpy as np
>>> h = UnitHistory(1)
>>> [h.push(np.array([v])).round(3).tolist() for v in (1.0, 2.0, 3.0)][-1]
[2.0, 2.0, 1.512, 3.0]
>>> history_features(np.array([[1.0], [2.0], [3.0]])).round(3).tolist()[-1]
[2.0, 2.0, 1.512, 3.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SPANS = (15, 30)  # readings per history mean
EWM_SPAN = 10  # readings: alpha = 2 / (span + 1)
ALPHA = 2.0 / (EWM_SPAN + 1)
STATS = (*(f"mean{n}" for n in SPANS), "ewm")
CONTEXT = 64
"""Readings kept before a window's first (feature set 2's raw windows, `shared.features.context_features`): with
them the history features can be recomputed from raw readings alone; the EWM, started this far back, is within
``(1 - ALPHA) ** CONTEXT`` (3e-6) of the whole history's."""
SERVICE = "service"


def history_names(sensors: Sequence[str]) -> list[str]:
    """Names of the history features, in order."""
    return [f"{sensor}.{stat}" for sensor in sensors for stat in STATS] + [SERVICE]


def n_history(n_sensors: int) -> int:
    return n_sensors * len(STATS) + 1


class UnitHistory:
    """One unit's history state; `push` a normalised reading, get its history features (float64)."""

    __slots__ = ("buf", "count", "ewm", "pos", "size")

    def __init__(self, width: int) -> None:
        self.size = max(SPANS)
        self.buf = np.empty((2 * self.size, width), dtype=np.float64)
        self.pos = 0
        self.count = 0
        self.ewm = np.zeros(width, dtype=np.float64)

    def push(self, row: np.ndarray) -> np.ndarray:
        x = np.asarray(row, dtype=np.float64)
        p = self.pos
        self.buf[p] = x
        self.buf[p + self.size] = x
        self.pos = (p + 1) % self.size
        self.count += 1
        if self.count == 1:
            self.ewm = x.copy()
        else:
            self.ewm = self.ewm + ALPHA * (x - self.ewm)
        end = self.pos + self.size  # the newest row is buf[end - 1]
        out = np.empty((len(STATS), x.shape[0]), dtype=np.float64)
        for i, span in enumerate(SPANS):
            n = min(span, self.count)
            block = self.buf[end - n:end]
            np.add.reduce(block, axis=0, out=out[i])
            np.true_divide(out[i], n, out=out[i])
        out[-1] = self.ewm
        return np.append(out.T.reshape(-1), float(self.count))


def history_features(readings: np.ndarray) -> np.ndarray:
    """History features after every reading of one unit's ``(time, sensors)`` series: ``(time, n_history)``."""
    x = np.ascontiguousarray(readings, dtype=np.float64)
    t, width = x.shape
    out = np.empty((len(STATS), t, width), dtype=np.float64)
    for i, span in enumerate(SPANS):
        for k in range(min(span - 1, t)):  # the first readings: the mean of all so far
            np.add.reduce(x[: k + 1], axis=0, out=out[i, k])
            np.true_divide(out[i, k], k + 1, out=out[i, k])
        if t >= span:
            blocks = np.lib.stride_tricks.sliding_window_view(x, span, axis=0).transpose(0, 2, 1)  # (n, span, s)
            np.add.reduce(blocks, axis=-2, out=out[i, span - 1:])  # row by row, as the ring's block is
            np.true_divide(out[i, span - 1:], span, out=out[i, span - 1:])
    ewm = out[-1]
    if t:
        ewm[0] = x[0]
    for k in range(1, t):
        ewm[k] = ewm[k - 1] + ALPHA * (x[k] - ewm[k - 1])
    features = out.transpose(1, 2, 0).reshape(t, -1)
    service = np.arange(1, t + 1, dtype=np.float64)[:, None]
    return np.concatenate([features, service], axis=1)
