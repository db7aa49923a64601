"""Readings from arrays already in memory: for benchmarks, tests and replaying pre-recorded data."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from agent.sources.base import Reading, ReadingBatch


class ArraySource:
    """Yields the rows of a ``(time, sensors)`` array as readings: as fast as they are read, or with `rate` > 0
    that many per second from the first read on."""

    def __init__(
        self,
        sensors: Sequence[str],
        values: np.ndarray,
        ts: np.ndarray | None = None,
        units: Sequence[str | None] | None = None,
        rate: float = 0.0,
    ) -> None:
        self.sensors = list(sensors)
        self.values = np.asarray(values, dtype=np.float64)
        if self.values.ndim != 2 or self.values.shape[1] != len(self.sensors):
            raise ValueError(f"values must be (time, {len(self.sensors)}), got {self.values.shape}")
        self.ts = np.arange(len(self.values), dtype=np.float64) if ts is None else np.asarray(ts, dtype=np.float64)
        self.units = list(units) if units is not None else None
        self.bad_rows = 0
        self.rate = rate
        self._t0: float | None = None
        self._i = 0

    def read(self, timeout: float) -> Reading | None:
        if self.rate > 0:
            if self._t0 is None:
                self._t0 = time.monotonic()
            wait = self._t0 + self._i / self.rate - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, timeout))
                if wait > timeout:
                    return None
        i = self._i
        if i >= len(self.values):
            return None
        self._i = i + 1
        return Reading(float(self.ts[i]), self.values[i], self.units[i] if self.units else None)

    def read_many(self, max_n: int, timeout: float) -> ReadingBatch | None:
        """Up to `max_n` readings at once: all that are due (with `rate`, those whose time has come)."""
        first = self.read(timeout)  # paces like read(): waits for the first one that is due
        if first is None:
            return None
        i = self._i - 1
        end = min(len(self.values), i + max(1, max_n))
        if self.rate > 0:
            assert self._t0 is not None
            end = min(end, max(i + 1, int((time.monotonic() - self._t0) * self.rate) + 1))
        self._i = end
        return ReadingBatch(self.ts[i:end], self.values[i:end], self.units[i:end] if self.units else None)

    @property
    def exhausted(self) -> bool:
        return self._i >= len(self.values)

    def close(self) -> None:
        pass
