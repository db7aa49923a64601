"""Simulated machines: degradation to failure, operating regimes, sensor noise and injectable drift.

numpy only: the agent imports this package on gateways. Its names load with the module that defines them (PEP 562):
the agent's settings need `sim.drift` alone, not the dataset builder and the machine (a tenth of the agent's import
time here).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.dataset import SimDataset, default_fleet, make_fleet, simulate_windows, split_by_machine
    from sim.drift import Drift, NewFailureMode, NewRegime, SeasonalTemperature, SensorOffset
    from sim.machine import SENSORS, MachineConfig, SimReading, SimTrace, SimulatedMachine

_HOME = {
    **dict.fromkeys(("SimDataset", "default_fleet", "make_fleet", "simulate_windows", "split_by_machine"),
                    "sim.dataset"),
    **dict.fromkeys(("Drift", "NewFailureMode", "NewRegime", "SeasonalTemperature", "SensorOffset"), "sim.drift"),
    **dict.fromkeys(("SENSORS", "MachineConfig", "SimReading", "SimTrace", "SimulatedMachine"), "sim.machine"),
}

__all__ = [
    "SENSORS",
    "Drift",
    "MachineConfig",
    "NewFailureMode",
    "NewRegime",
    "SeasonalTemperature",
    "SensorOffset",
    "SimDataset",
    "SimReading",
    "SimTrace",
    "SimulatedMachine",
    "default_fleet",
    "make_fleet",
    "simulate_windows",
    "split_by_machine",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
