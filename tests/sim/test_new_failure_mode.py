"""The new failure mode: failures look different from `start_t` on, healthy operation reads exactly as before."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from shared.features import WindowSpec, extract, sliding_windows
from shared.wire import to_json_data
from sim import SENSORS, Drift, NewFailureMode, SimulatedMachine

SPEC = WindowSpec(sensors=list(SENSORS), size=30, step=5)
HORIZON = 100
START = 1000


def _run(seed: int, *drifts: Drift, steps: int = 8000):
    machine = SimulatedMachine("m-1", seed)
    for drift in drifts:
        machine.inject(drift)
    return machine.run(steps)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_only_failing_periods_after_start_change(seed: int) -> None:
    fault = NewFailureMode(start_t=START)
    plain, faulty = _run(seed), _run(seed, fault)
    changed = np.any(plain.values != faulty.values, axis=1)
    failing = (plain.t >= START) & (plain.rul < fault.span)
    assert changed.any() and not changed[~failing].any()  # nothing outside a failing period after start_t
    assert changed[failing].mean() > 0.95  # the first reading of a period still reads as before (ramp 0)
    # the ground truth is the machine's: the same failures at the same steps
    for name in ("t", "regime", "health", "rul", "failed", "life"):
        assert np.array_equal(getattr(plain, name), getattr(faulty, name)), name


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_healthy_windows_feature_distribution_is_identical(seed: int) -> None:
    """Same seed with and without the fault: every window of healthy operation (its readings in one life, the last
    beyond the failure horizon) has the very same features, so healthy operation's distribution cannot drift; the
    failing windows differ. (A window that spans a repair holds the failure itself, and is changed too.)"""
    fault = NewFailureMode(start_t=START, span=HORIZON)
    plain, faulty = _run(seed, steps=12_000), _run(seed, fault, steps=12_000)
    X_plain, X_faulty = (extract(sliding_windows(t.values, SPEC)) for t in (plain, faulty))
    ends = np.arange(len(X_plain)) * SPEC.step + SPEC.size - 1
    one_life = plain.life[ends] == plain.life[ends - SPEC.size + 1]
    healthy = one_life & (plain.rul[ends] > HORIZON)
    assert healthy.mean() > 0.8
    assert np.array_equal(X_plain[healthy], X_faulty[healthy])
    late = (plain.rul[ends] < HORIZON // 2) & (ends >= START + SPEC.size)
    assert late.sum() > 20 and np.all(np.any(X_plain[late] != X_faulty[late], axis=1))


def test_the_current_hunts_and_the_usual_wear_stops_showing() -> None:
    fault = NewFailureMode(start_t=0, amplitude=4.0, period=12)
    plain, faulty = _run(5), _run(5, fault)
    current, vibration = SENSORS.index("current"), SENSORS.index("vibration")
    last = plain.rul < 20  # the end of each failing period: full symptoms
    assert last.sum() > 50
    # the hunt: far more current swing than noise and wear give
    diff = faulty.values[last, current] - plain.values[last, current]
    assert np.std(diff) > 1.5
    # the usual symptom is held at the period's start: vibration below the plain failure's
    assert faulty.values[last, vibration].mean() < plain.values[last, vibration].mean() - 1.0


def test_it_is_a_drift_struct_in_sim_config() -> None:
    fault = msgspec.convert({"kind": "new_failure_mode", "start_t": 100, "amplitude": 3.0}, Drift)
    assert fault == NewFailureMode(start_t=100, amplitude=3.0) and fault.kind == "new_failure_mode"
    assert to_json_data(fault) == {"kind": "new_failure_mode", "start_t": 100, "span": 100, "amplitude": 3.0,
                                   "period": 12}
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"kind": "new_failure_mode", "start_t": 0, "span": 1}, Drift)
