"""Feature set 2 on the agent: each reading normalised by its operating regime before the windower, and the
unit's history features appended after the window features (`shared.regimes`, `shared.history`; numpy only).

The runtime makes one `RegimePipeline` per served model of feature set 2 (none for set 1), so a swap or a
rollback to a model with another feature set or other regime statistics starts every unit's history afresh,
as it does the windows.

A raw window kept for the hub runs `shared.history.CONTEXT` readings back before the window, with the count of
readings before its first (`RawWindow.service`): from these the hub restates the window's features under regime
statistics it learns (`shared.features.context_features`).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.pipeline.windowing import MAX_UNITS
from shared.errors import ConfigError
from shared.features import REGIMES
from shared.history import CONTEXT, UnitHistory
from shared.manifest import ModelManifest
from shared.messages import MAX_WINDOW_VALUES, window_numbers
from shared.regimes import RegimeTransform, setting_columns


@dataclass
class _Unit:
    history: UnitHistory
    last: np.ndarray = field(default_factory=lambda: np.empty(0))  # history features after the last reading
    raw: deque[np.ndarray] = field(default_factory=deque)  # the last `RegimePipeline.keep` readings as read
    times: deque[float] = field(default_factory=deque)  # and their times


@dataclass(frozen=True, slots=True)
class RawReadings:
    """A unit's last readings as the source gave them (model's sensor order), oldest first: the window and up to
    `CONTEXT` before it; `service` readings of the unit's history came before the first of them."""

    times: np.ndarray  # (n,) float64
    readings: np.ndarray  # (n, sensors) float64
    service: int


class RegimePipeline:
    """Per unit: `reading` turns a source row into a regime-normalised row in the model's sensor order (and
    advances the unit's history); `features` appends that history to a window's features; `raw_window` is the
    readings of the last window as read and the `CONTEXT` before it (what an alarm or a random sample keeps for the
    hub, not the normalised ones)."""

    def __init__(self, manifest: ModelManifest, source_sensors: Sequence[str]) -> None:
        spec, stats = manifest.window, manifest.regimes
        if spec.feature_set_version != REGIMES or stats is None:
            raise ConfigError(f"model {manifest.version} is not of feature set {REGIMES} with regime statistics")
        missing = [s for s in spec.sensors if s not in source_sensors]
        if missing:
            raise ConfigError(f"the model needs sensors {missing} that the source does not provide")
        self.sensors = list(spec.sensors)  # what the windower is given: rows already in this order
        self.columns = np.array([list(source_sensors).index(s) for s in spec.sensors], dtype=np.intp)
        self.transform = RegimeTransform(stats, setting_columns(stats, spec.sensors))
        self.size = spec.size
        # readings kept per unit: the window and CONTEXT before it, fewer context readings when that many would not
        # fit in one RawWindow message (never fewer than the window: `agent.exchange` refuses one that large)
        fits = MAX_WINDOW_VALUES // window_numbers(len(self.sensors), 1)
        self.keep = max(spec.size, min(spec.size + CONTEXT, fits))
        self._units: OrderedDict[str | None, _Unit] = OrderedDict()

    def reading(self, ts: float, values: np.ndarray, unit: str | None) -> np.ndarray | None:
        """The normalised row of a reading taken at `ts`, or None when a used value is missing, NaN or infinite (it
        enters no history)."""
        row = np.asarray(values, dtype=np.float64)[self.columns]
        if not math.isfinite(sum(row.tolist())):
            return None
        z = self.transform(row)
        state = self._units.get(unit)
        if state is None:
            state = self._units[unit] = _Unit(UnitHistory(len(self.columns)), raw=deque(maxlen=self.keep),
                                              times=deque(maxlen=self.keep))
            if len(self._units) > MAX_UNITS:
                self._units.popitem(last=False)
        elif len(self._units) > 1:
            self._units.move_to_end(unit)
        state.last = state.history.push(z)
        state.raw.append(row)
        state.times.append(ts)
        return z

    def features(self, window_features: np.ndarray, unit: str | None) -> np.ndarray:
        """A window's features followed by its unit's history after the window's last reading, float32."""
        return np.concatenate([window_features, self._units[unit].last.astype(np.float32)])

    def raw_window(self, unit: str | None) -> RawReadings:
        """`unit`'s last readings as the source gave them: its last window's and up to `keep` - `size` before it."""
        state = self._units[unit]
        return RawReadings(np.array(state.times, dtype=np.float64), np.stack(state.raw),
                           state.history.count - len(state.raw))
