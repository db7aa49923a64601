"""Simulated technicians: label a fleet's predictions from the simulator's ground truth, with delay and noise.

A simulated agent stamps reading ``t`` of its machine ``start_ts + t / rate`` (`agent.sources.sim`), so the
window a prediction scored ends on step ``t = round((window_end - start_ts) * rate)``. Replaying the same
machine (id, seed, config and drifts) gives that step's remaining useful life exactly, and the label is the
models' target: the machine fails within `horizon` readings (``rul[t] <= horizon``, as `sim.dataset`).

A technician answers only for predictions at least `delay_s` old, and gets a verdict wrong with probability
`error_rate`. Whether a verdict is wrong is drawn from a seed fixed by the technician's seed, the device and
the step, not by call order: the same technician always gives the same answer about the same window, and a
run labels the same windows the same way however the predictions are batched.

numpy only (and the wire contract for `Annotation`): the simulated fleet runs on gateways too.

>>> from sim.machine import MachineConfig
>>> device = SimDevice("pump-1", seed=3, config=MachineConfig(), start_ts=1000.0, rate=10.0)
>>> device.step_at(1012.5)
125
>>> rul = GroundTruth().rul_at(device, 125)
>>> rul == int(SimulatedMachine("pump-1", 3).run(126).rul[125])
True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from shared.messages import Annotation
from sim.drift import Drift
from sim.machine import MachineConfig, SimulatedMachine

__all__ = ["FAULT_TYPE", "GroundTruth", "PredictionLike", "SimDevice", "SimulatedTechnician"]

FAULT_TYPE = "wear"  # the simulator's one failure mode: wear collapsing to a breakdown
_CHUNK = 4096  # steps replayed at least per extension of a cached run


class PredictionLike(Protocol):
    """What a technician needs of a prediction: a hub `PredictionRow`, a `Prediction` message or an agent row."""

    @property
    def trace_id(self) -> str: ...

    @property
    def device_id(self) -> str: ...

    @property
    def ts(self) -> float: ...

    @property
    def window_end(self) -> float: ...

    @property
    def model_version(self) -> str | None: ...


@dataclass(frozen=True)
class SimDevice:
    """How one device's simulated source runs: everything needed to replay its machine's ground truth."""

    device_id: str
    seed: int
    config: MachineConfig = field(default_factory=MachineConfig)
    drifts: tuple[Drift, ...] = ()
    start_ts: float = 0.0
    rate: float = 1.0  # readings per second; 0 (unpaced) stamps readings 1 s apart, as the agent's source

    @property
    def period(self) -> float:
        return 1.0 / self.rate if self.rate > 0 else 1.0

    def step_at(self, ts: float) -> int:
        """The step whose reading is stamped `ts`; ValueError for a time before the source started."""
        t = round((ts - self.start_ts) / self.period) if math.isfinite(ts) else -1
        if t < 0:
            raise ValueError(f"{self.device_id}: {ts} is not a reading time of a source started at {self.start_ts}")
        return int(t)

    def ts_of(self, step: int) -> float:
        """The timestamp the agent gives reading `step` (the inverse of `step_at`)."""
        return self.start_ts + step * self.period


@dataclass
class _Run:
    machine: SimulatedMachine
    rul: np.ndarray  # int64, one entry per step replayed so far


class GroundTruth:
    """Replays simulated machines to read their remaining useful life; one cached run per device.

    `SimulatedMachine.run` continues exactly where it stopped, so a cached run is extended, never redone.
    """

    def __init__(self) -> None:
        self._runs: dict[tuple[str, int, MachineConfig, tuple[Drift, ...]], _Run] = {}

    def rul_at(self, device: SimDevice, step: int) -> int:
        """Readings left before the failure of the life that `step` belongs to (0 on the failing step)."""
        if step < 0:
            raise ValueError("step must be >= 0")
        key = (device.device_id, device.seed, device.config, tuple(device.drifts))
        run = self._runs.get(key)
        if run is None:
            machine = SimulatedMachine(device.device_id, device.seed, device.config)
            for drift in device.drifts:
                machine.inject(drift)
            run = self._runs[key] = _Run(machine, np.empty(0, dtype=np.int64))
        if step >= run.rul.shape[0]:
            more = max(step + 1 - run.rul.shape[0], _CHUNK, run.rul.shape[0])
            run.rul = np.concatenate([run.rul, run.machine.run(more).rul])
        return int(run.rul[step])

    def rul_of(self, device: SimDevice, steps: np.ndarray) -> np.ndarray:
        """`rul_at` for many steps at once (int64, the shape of `steps`): scoring whole logs stays fast."""
        steps = np.asarray(steps, dtype=np.int64)
        if steps.size == 0:
            return np.empty(steps.shape, dtype=np.int64)
        if int(steps.min()) < 0:
            raise ValueError("steps must be >= 0")
        self.rul_at(device, int(steps.max()))  # replays (and caches) far enough
        key = (device.device_id, device.seed, device.config, tuple(device.drifts))
        return self._runs[key].rul[steps]

    def truth_for(
        self,
        device_id: str,
        machine_config: MachineConfig,
        seed: int,
        drifts: Sequence[Drift],
        start_ts: float,
        rate: float,
        window_end_ts: float,
        horizon: int,
    ) -> bool:
        """Whether the machine fails within `horizon` readings of the window ending at `window_end_ts`."""
        device = SimDevice(device_id, seed, machine_config, tuple(drifts), start_ts, rate)
        return self.rul_at(device, device.step_at(window_end_ts)) <= horizon


class SimulatedTechnician:
    """Confirms or rejects predictions from the simulator's ground truth, `delay_s` after they were made.

    `fleet` describes the devices this technician looks after; `horizon` is the model's (the manifest's
    ``training.params["horizon"]``). Confidence is ``1 - error_rate``: a technician who is wrong one time in
    five says so. `truth` may be shared between technicians (it caches one replay per device).
    """

    def __init__(
        self,
        technician_id: str,
        *,
        delay_s: float,
        error_rate: float,
        seed: int,
        fleet: Mapping[str, SimDevice] | Iterable[SimDevice] = (),
        horizon: int = 100,
        truth: GroundTruth | None = None,
    ) -> None:
        if not technician_id:
            raise ValueError("a technician needs an id")
        if delay_s < 0 or not 0.0 <= error_rate <= 1.0 or horizon < 0:
            raise ValueError("need delay_s >= 0, 0 <= error_rate <= 1 and horizon >= 0")
        self.technician_id = technician_id
        self.delay_s = delay_s
        self.error_rate = error_rate
        self.seed = seed
        self.horizon = horizon
        self.fleet = dict(fleet) if isinstance(fleet, Mapping) else {d.device_id: d for d in fleet}
        self.truth = truth if truth is not None else GroundTruth()
        self.confidence = 1.0 - error_rate

    def fails(self, device_id: str, window_end_ts: float) -> bool:
        """The ground truth for a window of `device_id` ending at `window_end_ts` (no noise)."""
        device = self._device(device_id)
        return self.truth.rul_at(device, device.step_at(window_end_ts)) <= self.horizon

    def mistaken(self, device_id: str, step: int) -> bool:
        """Whether this technician gets the window ending on `step` of `device_id` wrong (seeded, order-free)."""
        if self.error_rate <= 0.0:
            return False
        digest = hashlib.sha256(device_id.encode()).digest()
        entropy = [self.seed, int.from_bytes(digest[:8], "big"), step]
        return bool(np.random.default_rng(entropy).random() < self.error_rate)

    def label(self, predictions: Iterable[PredictionLike], now: float) -> list[Annotation]:
        """Annotations for the predictions made at least `delay_s` before `now`; younger ones are left for later.

        Each annotation's id is derived from the technician and the trace, so labelling a trace again gives
        the same annotation (the hub stores it once). KeyError for a device outside `fleet`.
        """
        out: list[Annotation] = []
        for p in predictions:
            if now - p.ts < self.delay_s:
                continue
            device = self._device(p.device_id)
            step = device.step_at(p.window_end)
            fault = self.truth.rul_at(device, step) <= self.horizon
            if self.mistaken(p.device_id, step):
                fault = not fault
            out.append(Annotation(
                annotation_id=hashlib.sha256(f"{self.technician_id}\x00{p.trace_id}".encode()).hexdigest()[:32],
                device_id=p.device_id, ts=now, model_version=p.model_version, trace_id=p.trace_id,
                label="fault" if fault else "no_fault", fault_type=FAULT_TYPE if fault else None,
                technician_id=self.technician_id, confidence=self.confidence, signal="confirmed",
            ))
        return out

    def _device(self, device_id: str) -> SimDevice:
        try:
            return self.fleet[device_id]
        except KeyError:
            raise KeyError(f"technician {self.technician_id} does not look after device {device_id!r}") from None
