"""The sensor-source interface: `read(timeout)` returns the next reading or None when none is ready yet."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

FLOAT32_MAX = float(np.finfo(np.float32).max)  # features are float32: a larger finite value becomes inf
MAX_UNIT_CHARS = 64  # the wire contract's limit on `unit` (shared.messages.Prediction)


@dataclass(slots=True)
class Reading:
    """One timestamped reading of every sensor of a source.

    `values` are float64 in the order of the source's `sensors`; NaN marks a missing value.
    `unit` names the machine (or engine) the reading comes from: windows never span two units.
    """

    ts: float
    values: np.ndarray
    unit: str | None = None


@dataclass(slots=True)
class ReadingBatch:
    """Readings that arrived together, in order: ``ts (n,)``, ``values (n, sensors)`` float64 and each one's unit
    (None: no units). A source that can hand readings over in bulk offers ``read_many(max_n, timeout)``."""

    ts: np.ndarray
    values: np.ndarray
    units: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def of(cls, readings: list[Reading]) -> ReadingBatch:
        """A batch of readings that already passed `reading_problem` (same sensors each)."""
        units = [r.unit for r in readings]
        return cls(np.array([r.ts for r in readings], dtype=np.float64),
                   np.array([r.values for r in readings], dtype=np.float64).reshape(len(readings), -1),
                   units if any(u is not None for u in units) else None)

    def reading(self, i: int) -> Reading:
        return Reading(float(self.ts[i]), self.values[i], self.units[i] if self.units is not None else None)


def unit_problem(unit: object) -> str | None:
    """Why `unit` cannot name a unit in a message and the database (None when it can)."""
    if unit is None:
        return None
    if not isinstance(unit, str):
        return f"unit must be a string, not {type(unit).__name__}"
    if len(unit) > MAX_UNIT_CHARS:
        return f"unit name longer than {MAX_UNIT_CHARS} characters ({len(unit)})"
    try:
        unit.encode("utf-8")
    except UnicodeEncodeError:
        return f"unit name {unit!r} is not valid UTF-8 (a lone surrogate)"
    if not unit.isprintable():
        return f"unit name {unit!r} has control characters"
    return None


def value_problem(values: np.ndarray) -> str | None:
    """Why `values` cannot be scored (None when they can): a finite value beyond float32's range.

    NaN and ±inf mean "missing" and are counted by the windower; refused here are the finite values that the
    float32 features would silently turn into inf.
    """
    for value in values.tolist():  # a handful of sensors: plain floats beat numpy's per-call overhead
        if FLOAT32_MAX < abs(value) < math.inf:
            return f"value {value:g} is beyond float32's range (±{FLOAT32_MAX:.4g})"
    return None


def reading_problem(reading: Reading) -> str | None:
    """Why `reading` must be skipped before it enters a window (None when it may enter)."""
    if not isinstance(reading.ts, float | int) or not math.isfinite(reading.ts):
        return f"time {reading.ts!r} is not a finite number"
    return unit_problem(reading.unit) or value_problem(reading.values)


@runtime_checkable
class SensorSource(Protocol):
    """A stream of readings.

    `sensors` names the columns of every reading's `values`. `bad_rows` counts source rows that could
    not be parsed (they are logged and skipped, never raised). `read` blocks at most `timeout` seconds
    and returns None when nothing is ready; `exhausted` becomes true when the stream has ended for good.
    """

    sensors: list[str]
    bad_rows: int

    def read(self, timeout: float) -> Reading | None: ...

    @property
    def exhausted(self) -> bool: ...

    def close(self) -> None: ...
