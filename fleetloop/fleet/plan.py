"""Planning a simulated fleet: which device runs which machine (cohort), seed and drifts, with what settings.

`plan_fleet` deals devices ``dev-0…`` into the simulator's cohorts with seeds of their own; `agent_config`
and `to_toml` write the settings file each agent process reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import ConfigError
from shared.topics import DEFAULT_PREFIX
from shared.wire import from_dict, to_dict, to_json_data
from sim.dataset import default_fleet
from sim.drift import Drift
from sim.machine import MachineConfig
from sim.technicians import SimDevice

DriftPlan = Callable[["DeviceSpec"], Sequence[Drift]]


@dataclass(frozen=True)
class DeviceSpec:
    """One simulated device: its id, simulator seed, machine (cohort) and drifts to inject."""

    device_id: str
    seed: int
    machine: MachineConfig
    drifts: tuple[Drift, ...] = ()

    @property
    def cohort(self) -> str:
        return self.machine.cohort

    def sim_device(self, *, start_ts: float, rate: float) -> SimDevice:
        """This device as its agent's simulated source runs it (clock origin and pace): its ground truth."""
        return SimDevice(self.device_id, self.seed, self.machine, self.drifts, start_ts, rate)


def plan_fleet(n: int, seed: int, *, cohorts: Sequence[MachineConfig] | None = None,
               machine_overrides: Mapping[str, Any] | None = None, drift: DriftPlan | None = None) -> list[DeviceSpec]:
    """Devices ``dev-0`` … ``dev-{n-1}`` dealt into `cohorts` (default `default_fleet()`) in turn.

    Each device gets its own seed derived from `seed`; `machine_overrides` replace machine fields in every
    cohort (e.g. shorter lives); `drift` is the hook for drift injection: it returns the drifts of a device.
    """
    if n < 1:
        raise ConfigError("a fleet needs at least one device")
    configs = tuple(cohorts) if cohorts is not None else default_fleet()
    if not configs:
        raise ConfigError("a fleet needs at least one cohort")
    if machine_overrides:
        try:
            configs = tuple(from_dict(MachineConfig, {**to_dict(c), **machine_overrides}) for c in configs)
        except ValueError as exc:
            raise ConfigError(f"invalid machine settings: {exc}") from None
    seeds = np.random.SeedSequence(seed).generate_state(n, dtype=np.uint32)
    specs = [DeviceSpec(f"dev-{i}", int(seeds[i]), configs[i % len(configs)]) for i in range(n)]
    if drift is not None:
        specs = [DeviceSpec(s.device_id, s.seed, s.machine, tuple(drift(s))) for s in specs]
    return specs


@dataclass(frozen=True)
class FleetSettings:
    """Where the agents connect, what they serve and how fast their simulated machines produce readings."""

    host: str
    port: int
    passwords: Mapping[str, str]  # device id -> MQTT password
    model_dir: Path
    data_dir: Path
    prefix: str = DEFAULT_PREFIX
    rate: float = 10.0  # readings per second per device
    stats_interval_s: float = 5.0
    max_duration_s: float | None = None  # each agent's own --duration: a safety net if this process dies
    model_public_key: str | None = None  # the hub's signing key the agents pin (file path or base64 text)
    agent_overrides: Mapping[str, Any] = field(default_factory=dict)  # any other AgentSettings fields
    start_ts: float | None = None  # the sources' clock origin (reading t is stamped start_ts + t / rate); None: now


def agent_config(spec: DeviceSpec, settings: FleetSettings) -> dict[str, Any]:
    """The agent settings file of one device (everything but the password)."""
    source: dict[str, Any] = {"kind": "sim", "rate": settings.rate, "seed": spec.seed,
                              "sim_config": to_json_data(spec.machine)}
    if spec.drifts:
        source["drifts"] = [to_json_data(d) for d in spec.drifts]
    if settings.start_ts is not None:
        source["start_ts"] = settings.start_ts
    return {
        "device_id": spec.device_id, "data_dir": str((settings.data_dir / spec.device_id).resolve()),
        "prefix": settings.prefix, "site": spec.machine.site, "asset_type": spec.machine.asset_type,
        "mqtt_host": settings.host, "mqtt_port": settings.port, "initial_model": str(settings.model_dir.resolve()),
        "stats_interval_s": settings.stats_interval_s,
        **({"model_public_key": settings.model_public_key} if settings.model_public_key else {}),
        **settings.agent_overrides, "source": source,
    }


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def to_toml(data: Mapping[str, Any]) -> str:
    """TOML for a settings dict: scalars first, then one table per top-level mapping (nested ones inline)."""

    def key(k: str) -> str:
        return k if _BARE_KEY.match(k) else json.dumps(k)

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str | Path):
            return json.dumps(str(v))  # JSON string escapes are valid TOML basic-string escapes
        if isinstance(v, Mapping):
            return "{ " + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} as TOML")

    lines = [f"{key(k)} = {value(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    for name, table in data.items():
        if isinstance(table, Mapping):
            lines += ["", f"[{key(name)}]", *(f"{key(k)} = {value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"
