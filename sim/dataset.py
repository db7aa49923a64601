"""Labelled feature windows from a simulated fleet, and machine-wise splits (numpy only).

Features come from `shared.features` (the one implementation the agents run). A window is labelled
positive when its machine fails within `horizon` steps of the window's last reading.

>>> from shared.features import WindowSpec
>>> spec = WindowSpec(sensors=list(SENSORS), size=30, step=5)
>>> ds = simulate_windows(n_machines=3, steps=400, seed=1, spec=spec, horizon=100)
>>> ds.X.shape, ds.X.dtype.name, sorted(set(ds.y.tolist())) <= [0, 1]
((225, 36), 'float32', True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from shared.features import WindowSpec, extract, feature_names, sliding_windows
from sim.drift import Drift
from sim.machine import SENSORS, MachineConfig, SimulatedMachine

__all__ = ["SimDataset", "default_fleet", "make_fleet", "simulate_windows", "split_by_machine"]


def default_fleet() -> tuple[MachineConfig, ...]:
    """Three cohorts (site × asset type) that machines are dealt into in turn."""
    return (
        MachineConfig(site="site-a", asset_type="pump"),
        MachineConfig(site="site-b", asset_type="compressor", ambient_c=28.0),
        MachineConfig(site="site-a", asset_type="fan", ambient_c=18.0),
    )


def make_fleet(
    n_machines: int, seed: int, config: MachineConfig | Sequence[MachineConfig] | None = None
) -> list[SimulatedMachine]:
    """Machines ``sim-000``, ``sim-001``, … each with its own seed derived from `seed`.

    Machine ``i`` takes the configs in turn (default: `default_fleet()`). `simulate_windows` uses the same
    fleet, so a live simulation with the same arguments replays the training machines.
    """
    if n_machines < 1:
        raise ValueError("n_machines must be >= 1")
    configs = default_fleet() if config is None else (config,) if isinstance(config, MachineConfig) else config
    if not configs:
        raise ValueError("config must not be an empty sequence")
    seeds = np.random.SeedSequence(seed).generate_state(n_machines, dtype=np.uint64)
    return [
        SimulatedMachine(f"sim-{i:03d}", int(seeds[i]), configs[i % len(configs)]) for i in range(n_machines)
    ]


@dataclass(slots=True, frozen=True)
class SimDataset:
    """Feature rows with labels and the metadata needed to split and slice them."""

    X: np.ndarray  # float32 (n, n_features)
    y: np.ndarray  # int64 (n,): 1 = fails within `horizon` steps of the window end
    rul: np.ndarray  # int64 (n,): true remaining steps at the window end
    machine_id: np.ndarray  # str (n,)
    site: np.ndarray  # str (n,)
    asset_type: np.ndarray  # str (n,)
    window_end: np.ndarray  # int64 (n,): step index of the window's last reading
    regime: np.ndarray  # int64 (n,): regime at the window end
    spec: WindowSpec
    horizon: int

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def cohort(self) -> np.ndarray:
        """``site/asset_type`` of each row, the unit of per-cohort metrics."""
        return np.array([f"{s}/{a}" for s, a in zip(self.site, self.asset_type, strict=True)], dtype=str)

    @property
    def feature_names(self) -> list[str]:
        return feature_names(self.spec.sensors)

    @property
    def machines(self) -> list[str]:
        return sorted(set(self.machine_id.tolist()))

    def subset(self, rows: np.ndarray) -> SimDataset:
        """The rows selected by a boolean mask or an index array, in order."""
        return SimDataset(
            X=self.X[rows],
            y=self.y[rows],
            rul=self.rul[rows],
            machine_id=self.machine_id[rows],
            site=self.site[rows],
            asset_type=self.asset_type[rows],
            window_end=self.window_end[rows],
            regime=self.regime[rows],
            spec=self.spec,
            horizon=self.horizon,
        )


def simulate_windows(
    n_machines: int,
    steps: int,
    seed: int,
    spec: WindowSpec,
    horizon: int,
    config: MachineConfig | Sequence[MachineConfig] | None = None,
    drifts: Sequence[Drift] | Mapping[str, Sequence[Drift]] | None = None,
) -> SimDataset:
    """Simulate the `make_fleet` machines for `steps` steps each and cut each trace into labelled windows.

    `drifts` apply to every machine, or per machine id when a mapping. Windows may span a repair; their
    label follows the life of their last reading.
    """
    if steps < 0 or horizon < 0:
        raise ValueError("need steps >= 0 and horizon >= 0")
    unknown = [s for s in spec.sensors if s not in SENSORS]
    if unknown:
        raise ValueError(f"the simulator has no sensor(s) {unknown}; it has {list(SENSORS)}")
    columns = [SENSORS.index(s) for s in spec.sensors]

    parts: list[SimDataset] = []
    for machine in make_fleet(n_machines, seed, config):
        machine_id, cfg = machine.machine_id, machine.config
        machine_drifts = drifts.get(machine_id, ()) if isinstance(drifts, Mapping) else drifts or ()
        for drift in machine_drifts:
            machine.inject(drift)
        trace = machine.run(steps)
        windows = sliding_windows(trace.values[:, columns], spec)
        n = windows.shape[0]
        ends = np.arange(n, dtype=np.int64) * spec.step + (spec.size - 1)
        rul = trace.rul[ends]
        parts.append(
            SimDataset(
                X=extract(windows) if n else np.empty((0, spec.n_features), dtype=np.float32),
                y=(rul <= horizon).astype(np.int64),
                rul=rul,
                machine_id=np.full(n, machine_id),
                site=np.full(n, cfg.site),
                asset_type=np.full(n, cfg.asset_type),
                window_end=trace.t[ends],
                regime=trace.regime[ends],
                spec=spec,
                horizon=horizon,
            )
        )
    return _concat(parts)


def split_by_machine(
    ds: SimDataset, fractions: Sequence[float] = (0.6, 0.2, 0.2), *, seed: int
) -> tuple[SimDataset, ...]:
    """Split rows by machine, so no machine is in two parts; each cohort is split in the same proportions.

    Returns one dataset per fraction. Raises ValueError when a part would get no machine.
    """
    frac = np.asarray(fractions, dtype=np.float64)
    if frac.ndim != 1 or frac.size < 2 or np.any(frac <= 0) or not np.isclose(frac.sum(), 1.0):
        raise ValueError("fractions must be two or more positive numbers summing to 1")
    rng = np.random.default_rng(seed)
    cohort = ds.cohort
    assigned: list[list[str]] = [[] for _ in frac]
    for name in sorted(set(cohort.tolist())):
        machines = np.array(sorted(set(ds.machine_id[cohort == name].tolist())))
        rng.shuffle(machines)
        cuts = np.round(np.cumsum(frac)[:-1] * machines.size).astype(int)
        for part, chunk in zip(assigned, np.split(machines, cuts), strict=True):
            part.extend(chunk.tolist())
    if any(not part for part in assigned):
        raise ValueError(f"{len(ds.machines)} machines are too few to split into {frac.size} parts")
    return tuple(ds.subset(np.isin(ds.machine_id, part)) for part in assigned)


def _concat(parts: Sequence[SimDataset]) -> SimDataset:
    first = parts[0]
    return SimDataset(
        X=np.concatenate([p.X for p in parts]),
        y=np.concatenate([p.y for p in parts]),
        rul=np.concatenate([p.rul for p in parts]),
        machine_id=np.concatenate([p.machine_id for p in parts]),
        site=np.concatenate([p.site for p in parts]),
        asset_type=np.concatenate([p.asset_type for p in parts]),
        window_end=np.concatenate([p.window_end for p in parts]),
        regime=np.concatenate([p.regime for p in parts]),
        spec=first.spec,
        horizon=first.horizon,
    )
