"""Simulated machines: determinism, degradation to an exact failure, regimes and drift injection."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from shared.wire import to_json_data
from sim import (
    SENSORS,
    Drift,
    MachineConfig,
    NewRegime,
    SeasonalTemperature,
    SensorOffset,
    SimulatedMachine,
)
from sim.physics import REGIME_LOADS

STEPS = 3000


def _trace(seed: int, *drifts: Drift, config: MachineConfig | None = None, steps: int = STEPS):
    machine = SimulatedMachine("m-1", seed, config)
    for drift in drifts:
        machine.inject(drift)
    return machine.run(steps)


def test_golden_seed_0() -> None:
    trace = _trace(0, steps=2000)
    assert np.flatnonzero(trace.failed).tolist() == [736, 1352]
    assert trace.values[0].round(6).tolist() == [66.819672, 2.783014, 5.647533, 57.80966, 29.863704, 1510.284544]
    assert int(trace.regime[0]) == 1


def test_same_seed_same_readings_different_seed_different() -> None:
    a, b, c = _trace(11), _trace(11), _trace(12)
    for field in ("t", "values", "regime", "health", "rul", "failed", "life"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert not np.array_equal(a.values, c.values)
    assert not np.array_equal(a.rul, c.rul)


def test_step_gives_the_same_readings_as_run() -> None:
    drifts = (
        SensorOffset(sensor="pressure", offset=0.4, start_t=100),
        SeasonalTemperature(amplitude=3.0, period=250, start_t=500),
        NewRegime(start_t=1500),
    )
    trace = _trace(5, *drifts, steps=2000)
    machine = SimulatedMachine("m-1", 5)
    for drift in drifts:
        machine.inject(drift)
    readings = [machine.step() for _ in range(1000)] + [machine.step() for _ in range(1000)]
    assert np.array_equal(np.stack([r.values for r in readings]), trace.values)
    assert [r.t for r in readings] == trace.t.tolist()
    assert [r.rul for r in readings] == trace.rul.tolist()
    assert [r.regime for r in readings] == trace.regime.tolist()
    assert [r.failed for r in readings] == trace.failed.tolist()
    assert readings[0].values.dtype == np.float64 and readings[0].values.shape == (len(SENSORS),)


def test_run_in_chunks_equals_one_run() -> None:
    machine = SimulatedMachine("m-1", 9)
    chunks = [machine.run(n) for n in (1, 0, 499, 1500, 1000)]
    whole = _trace(9)
    assert np.array_equal(np.concatenate([c.values for c in chunks]), whole.values)
    assert np.array_equal(np.concatenate([c.rul for c in chunks]), whole.rul)


def test_every_life_ends_in_a_failure_at_rul_zero() -> None:
    config = MachineConfig(life_steps=(300, 800), random_start_age=False)
    trace = _trace(3, config=config, steps=6000)
    fails = np.flatnonzero(trace.failed)
    assert fails.size >= 7
    assert np.array_equal(fails, np.flatnonzero(trace.rul == 0))
    assert np.all(trace.health[fails] == 0.0)
    # counting down one step at a time within a life, then a repaired machine
    for start, end in zip(np.r_[0, fails[:-1] + 1], fails, strict=True):
        life = slice(start, end + 1)
        assert np.array_equal(trace.rul[life], np.arange(end - start, -1, -1))
        assert np.all(np.diff(trace.health[life]) <= 0.0)
        assert trace.health[start] == 1.0
        assert 300 <= end - start + 1 <= 800
        assert np.all(trace.life[life] == trace.life[start])
    assert np.array_equal(np.unique(trace.life), np.arange(fails.size + 1))


def test_random_start_age_starts_mid_life() -> None:
    assert _trace(3, steps=1).health[0] < 1.0
    assert _trace(3, steps=1, config=MachineConfig(random_start_age=False)).health[0] == 1.0


def test_degradation_shows_in_several_sensors() -> None:
    config = MachineConfig(regimes=(1,), random_start_age=False)
    trace = _trace(4, config=config, steps=20_000)
    near_end = (trace.rul < 30) & ~trace.failed
    fresh = trace.health > 0.97
    delta = trace.values[near_end].mean(axis=0) - trace.values[fresh].mean(axis=0)
    change = dict(zip(SENSORS, delta, strict=True))
    assert change["vibration"] > 1.0
    assert change["temperature"] > 5.0
    assert change["flow"] < -3.0
    assert change["current"] > 1.0


def test_regimes_switch_and_shift_baselines() -> None:
    trace = _trace(8, config=MachineConfig(regime_switch_prob=0.01, random_start_age=False), steps=6000)
    assert set(np.unique(trace.regime).tolist()) == {0, 1, 2}
    current = trace.values[:, SENSORS.index("current")]
    fresh = trace.health > 0.9
    means = [current[fresh & (trace.regime == r)].mean() for r in (0, 1, 2)]
    assert means[0] < means[1] < means[2]


def test_single_regime_never_switches() -> None:
    trace = _trace(8, config=MachineConfig(regimes=(2,)))
    assert set(trace.regime.tolist()) == {2}


@pytest.mark.parametrize(
    ("drift", "sensor"),
    [
        (SensorOffset(sensor="pressure", offset=0.8, start_t=1200), "pressure"),
        (SeasonalTemperature(amplitude=6.0, period=400, start_t=1200), "temperature"),
    ],
)
def test_sensor_drifts_change_only_their_sensor_from_start_t(drift: Drift, sensor: str) -> None:
    base, drifted = _trace(21), _trace(21, drift)
    before, after = slice(0, 1200), slice(1200, None)
    assert np.array_equal(base.values[before], drifted.values[before])
    j = SENSORS.index(sensor)
    others = [i for i in range(len(SENSORS)) if i != j]
    assert np.array_equal(base.values[:, others], drifted.values[:, others])
    diff = drifted.values[after, j] - base.values[after, j]
    assert np.mean(np.abs(diff)) > 0.5
    assert np.array_equal(base.rul, drifted.rul) and np.array_equal(base.regime, drifted.regime)


def test_sensor_offset_is_exactly_the_offset() -> None:
    base = _trace(2)
    drifted = _trace(2, SensorOffset(sensor="vibration", offset=1.5, start_t=10))
    j = SENSORS.index("vibration")
    assert np.allclose(drifted.values[10:, j] - base.values[10:, j], 1.5)


def test_seasonal_temperature_follows_a_sine() -> None:
    base = _trace(2)
    drifted = _trace(2, SeasonalTemperature(amplitude=4.0, period=500, start_t=1000))
    j = SENSORS.index("temperature")
    t = np.arange(1000, STEPS)
    expected = 4.0 * np.sin(2 * np.pi * (t - 1000) / 500)
    assert np.allclose(drifted.values[1000:, j] - base.values[1000:, j], expected)


def test_new_regime_runs_outside_the_trained_loads_from_start_t() -> None:
    base = _trace(13)
    drifted = _trace(13, NewRegime(start_t=1500, load=1.7, regime=3))
    assert np.array_equal(base.values[:1500], drifted.values[:1500])
    assert np.array_equal(base.regime[:1500], drifted.regime[:1500])
    assert set(drifted.regime[1500:].tolist()) == {3}
    assert max(REGIME_LOADS) < 1.7
    for sensor in ("current", "flow", "rpm"):
        j = SENSORS.index(sensor)
        assert drifted.values[1500:, j].mean() > base.values[:, j].max() * 0.98, sensor
    assert np.array_equal(base.rul, drifted.rul)


def test_drifts_validate_and_round_trip_as_json() -> None:
    for drift in (
        SensorOffset(sensor="flow", offset=-2.0, start_t=5),
        NewRegime(start_t=7),
        SeasonalTemperature(amplitude=1.0, period=100, start_t=0),
    ):
        assert msgspec.json.decode(msgspec.json.encode(drift), type=Drift) == drift
        assert msgspec.convert(to_json_data(drift), Drift) == drift and to_json_data(drift)["kind"] == drift.kind
    with pytest.raises(ValueError, match="unknown sensor 'humidity'"):
        SensorOffset(sensor="humidity", offset=1.0, start_t=0)
    with pytest.raises(ValueError, match="start_t"):
        SeasonalTemperature(amplitude=1.0, period=100, start_t=-1)


@pytest.mark.parametrize(
    "bad",
    [
        {"regimes": (0, 0)},
        {"regimes": (5,)},
        {"regimes": ()},
        {"life_steps": (500, 100)},
        {"life_steps": (5, 100)},
        {"degradation_tau": (0.0, 10.0)},
        {"unknown": 1},
        {"asset_type": "turbine"},
    ],
)
def test_machine_config_refuses_what_cannot_work(bad: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(bad, MachineConfig)  # plain data, as read from a settings file
    if "unknown" not in bad:
        with pytest.raises(ValueError):
            MachineConfig(**bad)  # type: ignore[arg-type]  # built in code: checked the same


def test_run_refuses_negative_steps() -> None:
    with pytest.raises(ValueError, match="steps"):
        SimulatedMachine("m", 0).run(-1)
