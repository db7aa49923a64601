"""A simulated machine: lives that degrade to a known failure, operating regimes, noise and drift.

Each life draws its length, collapse speed and sensor gains when it starts, so the failure step and
therefore the remaining useful life (`rul`) of every reading are exact ground truth. After the failing
step the machine is repaired and the next step starts a new life.

All randomness of a life is drawn in one block when the life starts, and drifts are applied when readings
are rendered, so `step()` and `run()` give identical readings and drifts never shift the random stream.

>>> m = SimulatedMachine("m-1", seed=3)
>>> r = m.step()
>>> (r.t, r.values.shape, 0.0 <= r.health <= 1.0)
(0, (6,), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
import numpy as np

from shared.wire import check_fields, finite
from sim.drift import Drift, NewFailureMode, NewRegime, SeasonalTemperature, SensorOffset
from sim.physics import ASSET_PROFILES, CALIBRATION_SPREAD, REGIME_LOADS, SENSORS, render, wear_curve

__all__ = ["SENSORS", "MachineConfig", "SimReading", "SimTrace", "SimulatedMachine"]

AssetType = Literal["pump", "compressor", "fan"]
_TEMPERATURE = SENSORS.index("temperature")
_CURRENT = SENSORS.index("current")


class MachineConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What kind of machine, where, and how it behaves. Randomness comes from the machine's seed.

    A msgspec struct: ``shared.wire.from_dict(MachineConfig, data)`` reads one from plain data (lists for
    tuples); one built in code is checked as that checks it.
    """

    site: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "site-a"
    asset_type: AssetType = "pump"
    regimes: Annotated[tuple[int, ...], msgspec.Meta(min_length=1, description="indices into REGIME_LOADS")] = (
        0, 1, 2)
    regime_switch_prob: Annotated[float, msgspec.Meta(ge=0.0, le=1.0, description="per step")] = 0.01
    noise: Annotated[float, msgspec.Meta(ge=0.0, le=10.0, description="multiplier of every sensor's noise")] = 1.0
    life_steps: tuple[int, int] = (300, 1500)
    degradation_tau: Annotated[tuple[float, float], msgspec.Meta(
        description="time constant (steps) of the final collapse; smaller is faster")] = (60.0, 180.0)
    ambient_c: float = 20.0
    random_start_age: Annotated[bool, msgspec.Meta(description="the first life starts part-way through")] = True
    reading_period_s: Annotated[float, msgspec.Meta(gt=0.0, description="seconds between readings")] = 1.0

    def __post_init__(self) -> None:
        check_fields(self)
        finite([self.ambient_c], "ambient_c")
        if len(set(self.regimes)) != len(self.regimes) or not all(
            0 <= r < len(REGIME_LOADS) for r in self.regimes
        ):
            raise ValueError(f"regimes must be distinct indices below {len(REGIME_LOADS)}")
        lo, hi = self.life_steps
        if not 20 <= lo <= hi:
            raise ValueError("life_steps must be (min, max) with 20 <= min <= max")
        tlo, thi = self.degradation_tau
        if not 0.0 < tlo <= thi:
            raise ValueError("degradation_tau must be (min, max) with 0 < min <= max")

    @property
    def cohort(self) -> str:
        return f"{self.site}/{self.asset_type}"


@dataclass(slots=True, frozen=True)
class SimReading:
    """One reading with its ground truth."""

    t: int
    values: np.ndarray  # float64, len(SENSORS), in SENSORS order
    regime: int
    health: float  # 1 = new, 0 = failed
    rul: int  # steps until the failure of the current life; 0 on the failing step
    failed: bool  # the machine fails on this step; the next step starts a new life


@dataclass(slots=True, frozen=True)
class SimTrace:
    """Consecutive readings as arrays, one row per step."""

    t: np.ndarray  # int64 (n,)
    values: np.ndarray  # float64 (n, len(SENSORS))
    regime: np.ndarray  # int64 (n,)
    health: np.ndarray  # float64 (n,)
    rul: np.ndarray  # int64 (n,)
    failed: np.ndarray  # bool (n,)
    life: np.ndarray  # int64 (n,): which life of the machine, counting from 0

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass(slots=True)
class _Life:
    index: int
    regime: np.ndarray  # regime ids
    wear: np.ndarray
    gains: np.ndarray  # (3,)
    z: np.ndarray  # (length, len(SENSORS)) standard normal

    @property
    def length(self) -> int:
        return int(self.wear.shape[0])


class SimulatedMachine:
    """A machine that degrades, fails and is repaired, forever; deterministic under its seed and drifts."""

    def __init__(self, machine_id: str, seed: int, config: MachineConfig | None = None) -> None:
        self.machine_id = machine_id
        self.seed = seed
        self.config = config if config is not None else MachineConfig()
        self._rng = np.random.default_rng(seed)
        self._scale = np.asarray(ASSET_PROFILES[self.config.asset_type]) * (
            1.0 + CALIBRATION_SPREAD * self._rng.standard_normal(len(SENSORS))
        )
        self._regime_idx = int(self._rng.integers(len(self.config.regimes)))
        self._drifts: list[Drift] = []
        self._t = 0
        self._life = self._new_life(0)
        self._pos = int(self._rng.integers(self._life.length // 2)) if self.config.random_start_age else 0

    @property
    def t(self) -> int:
        """Index of the next step."""
        return self._t

    @property
    def drifts(self) -> tuple[Drift, ...]:
        return tuple(self._drifts)

    def inject(self, drift: Drift) -> None:
        """Apply `drift` to every reading from ``drift.start_t`` on (readings already taken are unchanged)."""
        self._drifts.append(drift)

    def step(self) -> SimReading:
        trace = self.run(1)
        return SimReading(
            t=int(trace.t[0]),
            values=trace.values[0].copy(),
            regime=int(trace.regime[0]),
            health=float(trace.health[0]),
            rul=int(trace.rul[0]),
            failed=bool(trace.failed[0]),
        )

    def run(self, steps: int) -> SimTrace:
        """The next `steps` readings as arrays: the same readings as `steps` calls of `step()`."""
        if steps < 0:
            raise ValueError("steps must be >= 0")
        parts: list[tuple[_Life, int, int]] = []
        remaining = steps
        while remaining > 0:
            if self._pos >= self._life.length:
                self._life = self._new_life(self._life.index + 1)
                self._pos = 0
            end = min(self._life.length, self._pos + remaining)
            parts.append((self._life, self._pos, end))
            remaining -= end - self._pos
            self._pos = end
        t = np.arange(self._t, self._t + steps, dtype=np.int64)
        self._t += steps
        if not parts:
            parts.append((self._life, self._pos, self._pos))
        regime = np.concatenate([lf.regime[a:b] for lf, a, b in parts])
        wear = np.concatenate([lf.wear[a:b] for lf, a, b in parts])
        gains = np.concatenate([np.broadcast_to(lf.gains, (b - a, 3)) for lf, a, b in parts])
        z = np.concatenate([lf.z[a:b] for lf, a, b in parts])
        rul = np.concatenate([lf.length - 1 - np.arange(a, b, dtype=np.int64) for lf, a, b in parts])
        life = np.concatenate([np.full(b - a, lf.index, dtype=np.int64) for lf, a, b in parts])
        onset = {d.span: np.concatenate([np.full(b - a, lf.wear[max(0, lf.length - 1 - d.span)]) for lf, a, b in parts])
                 for d in self._drifts if isinstance(d, NewFailureMode)}
        return self._render(t, regime, wear, gains, z, rul, life, onset)

    def _render(
        self,
        t: np.ndarray,
        regime: np.ndarray,
        wear: np.ndarray,
        gains: np.ndarray,
        z: np.ndarray,
        rul: np.ndarray,
        life: np.ndarray,
        onset: dict[int, np.ndarray],
    ) -> SimTrace:
        """`onset` maps the span of each `NewFailureMode` to each row's wear at its life's failing period start."""
        load = np.asarray(REGIME_LOADS)[regime]
        shown = wear
        failing: list[tuple[NewFailureMode, np.ndarray]] = []
        for drift in self._drifts:
            if isinstance(drift, NewFailureMode):
                mask = (t >= drift.start_t) & (rul < drift.span)
                shown = np.where(mask, np.minimum(shown, onset[drift.span]), shown)
                failing.append((drift, mask))
        for drift in self._drifts:
            if isinstance(drift, NewRegime):
                active = t >= drift.start_t
                load = np.where(active, drift.load, load)
                regime = np.where(active, drift.regime, regime)
        values = render(
            load, shown, gains, z, scale=self._scale, ambient_c=self.config.ambient_c, noise=self.config.noise
        )
        for drift in self._drifts:
            if isinstance(drift, SensorOffset):
                values[:, SENSORS.index(drift.sensor)] += np.where(t >= drift.start_t, drift.offset, 0.0)
            elif isinstance(drift, SeasonalTemperature):
                phase = 2.0 * np.pi * (t - drift.start_t) / drift.period
                values[:, _TEMPERATURE] += np.where(t >= drift.start_t, drift.amplitude * np.sin(phase), 0.0)
        for fault, mask in failing:
            ramp = np.sqrt(np.clip((fault.span - rul) / fault.span, 0.0, 1.0))
            hunt = fault.amplitude * self._scale[_CURRENT] * ramp * np.sin(2.0 * np.pi * t / fault.period)
            values[:, _CURRENT] += np.where(mask, hunt, 0.0)
        return SimTrace(
            t=t, values=values, regime=regime, health=1.0 - wear, rul=rul, failed=rul == 0, life=life
        )

    def _new_life(self, index: int) -> _Life:
        cfg, rng = self.config, self._rng
        length = int(rng.integers(cfg.life_steps[0], cfg.life_steps[1] + 1))
        tau = float(rng.uniform(*cfg.degradation_tau))
        gains = rng.uniform(0.5, 1.5, size=3)
        n_regimes = len(cfg.regimes)
        switch = rng.random(length) < cfg.regime_switch_prob
        if n_regimes > 1:
            # each switch moves to one of the *other* regimes, uniformly
            jumps = np.where(switch, rng.integers(1, n_regimes, size=length), 0)
            idx = (self._regime_idx + np.cumsum(jumps)) % n_regimes
        else:
            idx = np.zeros(length, dtype=np.int64)
        self._regime_idx = int(idx[-1])
        z = rng.standard_normal((length, len(SENSORS)))
        regime = np.asarray(cfg.regimes, dtype=np.int64)[idx]
        return _Life(index=index, regime=regime, wear=wear_curve(length, tau), gains=gains, z=z)
