"""Simulated machines: degradation to failure, operating regimes, sensor noise and injectable drift.

numpy only: the agent imports this package on gateways.
"""

from sim.dataset import SimDataset, default_fleet, make_fleet, simulate_windows, split_by_machine
from sim.drift import Drift, NewFailureMode, NewRegime, SeasonalTemperature, SensorOffset
from sim.machine import SENSORS, MachineConfig, SimReading, SimTrace, SimulatedMachine

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
