"""Readings → windows, per unit, with a fixed-size ring buffer (no per-reading allocation)."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from shared.errors import ConfigError
from shared.features import WindowSpec

MAX_UNITS = 256  # units tracked at once; the least recently seen is dropped beyond this


class _Ring:
    """Double-written ring: the last `size` rows are always the contiguous slice buf[pos:pos+size]."""

    __slots__ = ("buf", "filled", "pos", "since_emit", "size", "start_ts")

    def __init__(self, size: int, width: int) -> None:
        self.size = size
        self.buf = np.empty((2 * size, width), dtype=np.float64)
        self.pos = 0
        self.filled = 0
        self.since_emit = 0
        self.start_ts: list[float] = [0.0] * size

    def push(self, ts: float, row: np.ndarray) -> None:
        p = self.pos
        self.buf[p] = row
        self.buf[p + self.size] = row
        self.start_ts[p] = ts
        self.pos = (p + 1) % self.size
        self.filled = min(self.filled + 1, self.size)
        self.since_emit += 1

    def window(self) -> np.ndarray:
        return self.buf[self.pos : self.pos + self.size]

    def first_ts(self) -> float:
        return self.start_ts[self.pos]

    def times(self) -> list[float]:
        return self.start_ts[self.pos :] + self.start_ts[: self.pos]


class Windower:
    """Maps a source's columns onto the model's sensors and emits a window every `step` readings.

    Readings with a missing, NaN or infinite value in a used sensor are counted in `bad_readings` and
    skipped (they never enter a window).
    """

    def __init__(self, spec: WindowSpec, source_sensors: Sequence[str]) -> None:
        missing = [s for s in spec.sensors if s not in source_sensors]
        if missing:
            raise ConfigError(
                f"the model needs sensors {missing} that the source does not provide "
                f"(source has: {', '.join(source_sensors)})"
            )
        self.spec = spec
        self.columns = np.array([list(source_sensors).index(s) for s in spec.sensors], dtype=np.intp)
        self._identity = list(self.columns) == list(range(len(source_sensors)))
        self._rings: OrderedDict[str | None, _Ring] = OrderedDict()
        self.bad_readings = 0

    def push(self, ts: float, values: np.ndarray, unit: str | None = None) -> np.ndarray | None:
        """Add one reading; return a ``(size, sensors)`` window view when one is due, else None.

        The view is only valid until the next push: use it (or copy it) at once.
        """
        row = values if self._identity else values[self.columns]
        if not math.isfinite(sum(row.tolist())) or not math.isfinite(ts):  # NaN or ±inf anywhere
            self.bad_readings += 1
            return None
        ring = self._rings.get(unit)
        if ring is None:
            ring = self._rings[unit] = _Ring(self.spec.size, len(self.columns))
            if len(self._rings) > MAX_UNITS:
                self._rings.popitem(last=False)
        elif len(self._rings) > 1:
            self._rings.move_to_end(unit)
        ring.push(ts, row)
        if ring.filled < self.spec.size or ring.since_emit < self.spec.step:
            return None
        ring.since_emit = 0
        return ring.window()

    def window_start(self, unit: str | None) -> float:
        """Timestamp of the first reading of the last window emitted for `unit`."""
        return self._rings[unit].first_ts()

    def window_times(self, unit: str | None) -> list[float]:
        """Timestamps of the readings of the last window emitted for `unit`, oldest first."""
        return self._rings[unit].times()
