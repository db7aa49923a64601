"""A simulated fleet's stats, as its agents send them: simulator machines, the real features, the real ONNX model.

Machines differ in calibration (each draws its own sensor gains, and `calibration` adds a constant sensor
offset from the first reading on), the way a fleet built by hand differs from the machines a model trained on.
`fleet_stats` runs every machine, scores its windows with the version's ONNX model and folds them into `Stats`
messages with the agent's own accumulator, one per `period` windows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.pipeline.stats import StatsAccumulator
from models.onnx_export import onnx_scores, onnx_session
from models.version import read_version
from shared.features import extract, sliding_windows
from shared.messages import Stats
from sim.drift import Drift, SensorOffset
from sim.machine import MachineConfig, SimulatedMachine


@dataclass(frozen=True)
class SimMachine:
    """One device of the simulated fleet: its machine, a calibration offset per sensor, later drifts."""

    device_id: str
    seed: int
    config: MachineConfig = field(default_factory=MachineConfig)
    calibration: Mapping[str, float] = field(default_factory=dict)
    drifts: Sequence[Drift] = ()


def fleet_stats(
    version_dir: Path, machines: Sequence[SimMachine], *, steps: int, start: int = 0, t0: float, period: int = 500
) -> list[Stats]:
    """Stats of readings ``start … start + steps`` of every machine, stamped from `t0` (one window a second).

    Windows are scored by the version's ONNX model; each `period` windows make one Stats message.
    """
    manifest, onnx = read_version(version_dir)
    session = onnx_session(onnx)
    out: list[Stats] = []
    for m in machines:
        machine = SimulatedMachine(m.device_id, m.seed, m.config)
        for sensor, offset in m.calibration.items():
            machine.inject(SensorOffset(start_t=0, sensor=sensor, offset=offset))
        for drift in m.drifts:
            machine.inject(drift)
        if start:
            machine.run(start)
        X = extract(sliding_windows(machine.run(steps).values, manifest.window))
        scores = onnx_scores(session, X)
        acc = StatsAccumulator(manifest, m.device_id, t0)
        for i in range(len(X)):
            acc.add(X[i], float(scores[i]), bool(scores[i] >= manifest.threshold), 0.001)
            if (i + 1) % period == 0 or i == len(X) - 1:
                out.append(acc.flush(t0 + i + 1))
    return out


# A hand-built fleet of six pumps at two sites, each calibrated its own way (no drift anywhere). Against the
# initial model's manifest (trained on a mix of pumps, compressors and fans) it reads as drifted everywhere.
CALIBRATION: dict[str, dict[str, float]] = {
    "dev-0": {}, "dev-1": {"pressure": 0.3}, "dev-2": {"temperature": 1.5},
    "dev-3": {"pressure": -0.2}, "dev-4": {}, "dev-5": {"vibration": 0.1},
}
SITE = {d: "site-a" if i < 3 else "site-b" for i, d in enumerate(CALIBRATION)}
STEPS = 20_000  # readings per device and window: about 4,000 windows each, enough for a device's own baseline
INJECTED = ("dev-1", "dev-4")  # devices whose temperature sensor reads 2.0 high in the second window


def calibrated_fleet(drifted: Sequence[str] = ()) -> list[SimMachine]:
    """The six calibrated pumps; `drifted` devices read temperature 2.0 high from step `STEPS` on."""
    return [SimMachine(d, 100 + i, MachineConfig(site=SITE[d]), calibration=cal,
                       drifts=[SensorOffset(start_t=STEPS, sensor="temperature", offset=2.0)] if d in drifted else ())
            for i, (d, cal) in enumerate(CALIBRATION.items())]


@dataclass(frozen=True)
class Windows:
    """The calibrated fleet's stats: a first window (`reference`), then a second one clean and with an offset."""

    reference: list[Stats]
    clean: list[Stats]
    injected: list[Stats]
    t0: float

    @property
    def reference_span(self) -> tuple[float, float]:
        """``[start, end)`` covering the first window's stats periods."""
        return self.t0, self.t0 + STEPS

    @property
    def later_span(self) -> tuple[float, float]:
        return self.t0 + 2 * STEPS, self.t0 + 3 * STEPS


def calibrated_windows(version_dir: Path, t0: float) -> Windows:
    """The fleet's first `STEPS` readings from `t0`, and the next `STEPS` (clean / offset) from ``t0 + 2 * STEPS``."""
    later = t0 + 2 * STEPS
    return Windows(
        reference=fleet_stats(version_dir, calibrated_fleet(), steps=STEPS, t0=t0),
        clean=fleet_stats(version_dir, calibrated_fleet(), steps=STEPS, start=STEPS, t0=later),
        injected=fleet_stats(version_dir, calibrated_fleet(INJECTED), steps=STEPS, start=STEPS, t0=later),
        t0=t0,
    )
