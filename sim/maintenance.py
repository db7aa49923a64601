"""A simulated maintenance log: an on-site technician reports failures and inspections as time ranges.

People at a plant do not label windows. They write a maintenance log: "pump 3 failed at 10:21, it had been
running rough since 10:19" (a fault over a time range), and now and then "inspected pump 3, healthy" (no fault
over the stretch the inspection vouches for). The hub turns each range into labels on the windows it covers
(`hub.labels.service.load_join`), and asks the device for the windows it kept to itself (``upload_traces`` with a
range). `MaintenanceLog` writes such a log from the simulator's ground truth, with a person's noise:

- a failure is logged as the range of its last `horizon` readings (the windows the model should have flagged), its
  ends off by up to `jitter` readings either way, and `missed_rate` of the failures are never logged;
- every machine is inspected every `inspect_every` readings (at a seeded offset per machine); an inspection of a
  healthy machine vouches for the time since its last entry (the last repair or inspection: "inspected, healthy
  since the last service"), at most `inspect_span` readings back when set; a machine already wearing towards a
  failure is called healthy anyway `inspect_error_rate` of the time (wrong labels), and otherwise the inspector
  logs nothing (the failure gets its own entry). A failure never logged leaves its windows inside the next
  inspection's healthy stretch: wrong labels too, as with a real log.

Every draw is seeded by the technician, the machine and the step, so the log does not depend on when it is read.
A report is written `delay_s` (wall clock) after what it describes. numpy only, like the rest of `sim`.

>>> from sim.machine import MachineConfig
>>> device = SimDevice("pump-1", seed=3, config=MachineConfig(), start_ts=0.0, rate=100.0)
>>> log = MaintenanceLog("tech-on-site", fleet={"pump-1": device}, horizon=100, seed=1, delay_s=0.0)
>>> notes = log.report(now=40.0)
>>> sorted({n.label for n in notes}), all(n.trace_id is None and n.end_ts > n.start_ts for n in notes)
(['fault', 'no_fault'], True)
>>> log.report(now=40.0)  # already written
[]
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from shared.messages import Annotation
from sim.technicians import FAULT_TYPE, GroundTruth, SimDevice

__all__ = ["MaintenanceLog"]


def _draw(*parts: object) -> float:
    """A uniform draw in [0, 1) fixed by `parts` (not by call order)."""
    digest = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    return float(np.random.default_rng(int.from_bytes(digest[:8], "big")).random())


@dataclass
class MaintenanceLog:
    """An on-site technician's log over `fleet`, as range annotations; `report(now)` gives the new entries."""

    technician_id: str
    fleet: dict[str, SimDevice]
    horizon: int
    seed: int
    delay_s: float = 2.0
    truth: GroundTruth = field(default_factory=GroundTruth)
    missed_rate: float = 0.05
    jitter: int = 10
    inspect_every: int = 1500
    inspect_span: int | None = None
    inspect_error_rate: float = 0.05
    confidence: float = 0.9
    _cursor: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _since: dict[str, int] = field(default_factory=dict, init=False, repr=False)  # first step after the last entry

    def __post_init__(self) -> None:
        if self.horizon < 1 or self.inspect_every < 1 or (self.inspect_span is not None and self.inspect_span < 1):
            raise ValueError("need horizon >= 1, inspect_every >= 1 and inspect_span >= 1")
        if not (0 <= self.missed_rate <= 1 and 0 <= self.inspect_error_rate <= 1 and self.jitter >= 0):
            raise ValueError("rates lie in [0, 1], jitter is >= 0")

    def restarted(self, device: SimDevice) -> None:
        """`device`'s machine started over: its log goes on from the new run's first reading."""
        self.fleet[device.device_id] = device
        self._cursor.pop(device.device_id, None)
        self._since.pop(device.device_id, None)

    def report(self, now: float) -> list[Annotation]:
        """The entries about readings up to ``now - delay_s`` not reported before, machine by machine."""
        out: list[Annotation] = []
        for device_id, device in self.fleet.items():
            if now - self.delay_s < device.start_ts:
                continue
            upto = device.step_at(now - self.delay_s)
            after = self._cursor.get(device_id, -1)
            if upto <= after:
                continue
            self._cursor[device_id] = upto
            steps = np.arange(after + 1, upto + 1)
            rul = self.truth.rul_of(device, steps)
            offset = int(_draw(self.seed, device_id, "offset") * self.inspect_every)
            first = -(-(after + 1 - offset) // self.inspect_every)  # ceil: the first inspection after `after`
            events = [(f, "fault") for f in steps[rul == 0].tolist()] + [
                (offset + k * self.inspect_every, "inspection")
                for k in range(max(first, 0), (upto - offset) // self.inspect_every + 1)]
            for step, kind in sorted(events):
                if kind == "fault":
                    self._since[device_id] = step + 1  # repaired: a new life
                    if _draw(self.seed, device_id, "missed", step) >= self.missed_rate:
                        first_step = step - self.horizon + self._jitter(device_id, step, 0)
                        last_step = step + self._jitter(device_id, step, 1)
                        out.append(self._entry(now, device, "fault", first_step, last_step))
                    continue
                start = self._since.get(device_id, 0)
                if self.inspect_span is not None:
                    start = max(start, step - self.inspect_span)
                wearing = self.truth.rul_at(device, step) <= self.horizon
                if step > start and (not wearing or _draw(self.seed, device_id, "inspection", step)
                                     < self.inspect_error_rate):
                    out.append(self._entry(now, device, "no_fault", start, step))
                    self._since[device_id] = step + 1
        return out

    def _jitter(self, device_id: str, step: int, end: int) -> int:
        return round((2 * _draw(self.seed, device_id, "jitter", step, end) - 1) * self.jitter)

    def _entry(self, now: float, device: SimDevice, label: str, first: int, last: int) -> Annotation:
        first, last = max(0, first), max(0, first + 1, last)
        fault = label == "fault"
        key = f"{self.technician_id}\x00{device.device_id}\x00{device.start_ts}\x00{label}\x00{last}"
        return Annotation(
            annotation_id=hashlib.sha256(key.encode()).hexdigest()[:32], device_id=device.device_id,
            ts=now, model_version=None, start_ts=device.ts_of(first),
            end_ts=device.ts_of(last), label="fault" if fault else "no_fault", fault_type=FAULT_TYPE if fault else None,
            technician_id=self.technician_id, confidence=self.confidence, signal="confirmed",
            note="failed (maintenance log)" if fault else "inspected, healthy (maintenance log)",
        )

    @property
    def devices(self) -> Mapping[str, SimDevice]:
        return self.fleet
