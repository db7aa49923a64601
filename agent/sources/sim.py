"""A simulated machine as a sensor source (numpy only; the simulator lives in `sim`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from agent.sources.base import Reading
from shared.wire import from_dict
from sim.drift import Drift
from sim.machine import SENSORS, MachineConfig, SimulatedMachine


class SimSource:
    """Readings of one simulated machine, paced at `rate` readings per second (0: as fast as possible).

    Timestamps advance by 1/rate (or 1 s when unpaced) from `start_ts`, so a fast replay keeps a
    realistic clock. `truth` holds the ground truth of the last reading (for simulated technicians).
    """

    def __init__(
        self,
        machine_id: str,
        *,
        seed: int = 0,
        rate: float = 1.0,
        config: dict[str, Any] | MachineConfig | None = None,
        start_ts: float | None = None,
        limit: int | None = None,
        drifts: Sequence[Drift] = (),
    ) -> None:
        cfg = config if isinstance(config, MachineConfig) else from_dict(MachineConfig, config or {})
        self.machine = SimulatedMachine(machine_id, seed, cfg)
        for drift in drifts:
            self.machine.inject(drift)
        self.sensors = list(SENSORS)
        self.bad_rows = 0
        self.rate = rate
        self.period = 1.0 / rate if rate > 0 else 1.0
        self.start_ts = time.time() if start_ts is None else start_ts
        self.limit = limit
        self.count = 0
        self.truth: Any = None
        self._next_at = time.monotonic()

    def read(self, timeout: float) -> Reading | None:
        if self.exhausted:
            return None
        if self.rate > 0:
            wait = self._next_at - time.monotonic()
            if wait > timeout:
                if timeout > 0:
                    time.sleep(timeout)
                return None
            if wait > 0:
                time.sleep(wait)
            self._next_at += self.period
        step = self.machine.step()
        self.truth = step
        ts = self.start_ts + step.t * self.period
        self.count += 1
        return Reading(ts, step.values, None)

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.count >= self.limit

    def close(self) -> None:
        pass
