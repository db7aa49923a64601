"""The sensor-source interface: `read(timeout)` returns the next reading or None when none is ready yet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(slots=True)
class Reading:
    """One timestamped reading of every sensor of a source.

    `values` are float64 in the order of the source's `sensors`; NaN marks a missing value.
    `unit` names the machine (or engine) the reading comes from: windows never span two units.
    """

    ts: float
    values: np.ndarray
    unit: str | None = None


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
