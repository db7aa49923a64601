"""Readings → windows → features, per unit, with the streaming feature state of `shared.streaming`.

Each unit has a `WindowState`: features are updated in O(1) per reading (amortised) and a window's readings are
only put together when asked for (an alarm window the hub may fetch).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from shared.errors import ConfigError
from shared.features import WindowSpec
from shared.streaming import Emitted, WindowState

MAX_UNITS = 256  # units tracked at once; the least recently seen is dropped beyond this


class Windower:
    """Maps a source's columns onto the model's sensors and emits a window every `step` readings of a unit.

    Readings with a missing, NaN or infinite value in a used sensor, or a non-finite time, are counted in
    `bad_readings` and skipped (they never enter a window).
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
        self._columns: list[int] = self.columns.tolist()
        self._states: OrderedDict[str | None, WindowState] = OrderedDict()
        self.bad_readings = 0

    def push(self, ts: float, values: np.ndarray, unit: str | None = None) -> Emitted | None:
        """Add one reading; return the window it completes (features, start, readings on demand), else None. The
        result is only valid until the next push.

        The same as `push_many` of one row, without its batch machinery (`WindowState.push_one`)."""
        row = values if self._identity else values[self.columns]
        if not (math.isfinite(ts) and all(map(math.isfinite, row.tolist()))):  # a few sensors: no numpy calls
            self.bad_readings += 1
            return None
        return self._state(unit).push_one(row, ts)

    def push_checked(self, ts: float, values: np.ndarray, x: list[float], unit: str | None = None) -> Emitted | None:
        """`push` of a reading whose time and every value the caller found finite: `values` (float64, the source's
        sensors) and the same as a list, `x`."""
        if self._identity:
            return self._state(unit).push_one(values, ts, x)
        return self._state(unit).push_one(values[self.columns], ts, [x[c] for c in self._columns])

    def push_many(self, ts: np.ndarray, values: np.ndarray, unit: str | None = None) -> Emitted:
        """Add ``(n, source sensors)`` readings of one unit, in order; return the windows they complete.

        `Emitted.ends` index `values`' rows. The result is only valid until the next push.
        """
        rows = values if self._identity else values[:, self.columns]
        good = np.isfinite(rows).all(axis=1) & np.isfinite(ts)
        if not good.all():
            self.bad_readings += int(len(good) - np.count_nonzero(good))
            keep = np.flatnonzero(good)
            rows, ts = rows[keep], ts[keep]
        else:
            keep = None
        out = self._state(unit).push_many(rows, ts)
        if keep is not None:
            out.ends = keep[out.ends]
        return out

    def _state(self, unit: str | None) -> WindowState:
        """`unit`'s streaming state (new if unseen), marked most recently seen."""
        state = self._states.get(unit)
        if state is None:
            state = self._states[unit] = WindowState(self.spec.size, self.spec.step, len(self.columns))
            if len(self._states) > MAX_UNITS:
                self._states.popitem(last=False)
        elif len(self._states) > 1:
            self._states.move_to_end(unit)
        return state
