"""Labelled windows from the simulated fleet, and machine-wise splits."""

from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sim.dataset
import sim.machine
from shared.features import WindowSpec, extract, feature_names, sliding_windows
from sim import SENSORS, MachineConfig, SensorOffset, make_fleet, simulate_windows, split_by_machine

SPEC = WindowSpec(sensors=list(SENSORS), size=30, step=5)


def test_windows_match_the_shared_feature_extraction_and_labels_match_rul() -> None:
    ds = simulate_windows(n_machines=4, steps=1200, seed=3, spec=SPEC, horizon=80)
    per_machine = (1200 - 30) // 5 + 1
    assert ds.X.shape == (4 * per_machine, SPEC.n_features) and ds.X.dtype == np.float32
    assert ds.feature_names == feature_names(SENSORS)
    assert np.array_equal(ds.y, (ds.rul <= 80).astype(np.int64))

    machine = make_fleet(4, seed=3)[2]
    trace = machine.run(1200)
    rows = ds.machine_id == "sim-002"
    assert np.array_equal(ds.X[rows], extract(sliding_windows(trace.values, SPEC)))
    ends = np.arange(per_machine) * 5 + 29
    assert np.array_equal(ds.window_end[rows], ends)
    assert np.array_equal(ds.rul[rows], trace.rul[ends])
    assert np.array_equal(ds.regime[rows], trace.regime[ends])
    assert set(ds.cohort[rows].tolist()) == {machine.config.cohort}


def test_positives_are_a_learnable_minority() -> None:
    ds = simulate_windows(n_machines=10, steps=3000, seed=1, spec=SPEC, horizon=100)
    assert 0.05 < ds.y.mean() < 0.2


def test_same_seed_same_dataset_different_seed_different() -> None:
    a, b, c = (simulate_windows(3, 800, s, SPEC, 100) for s in (5, 5, 6))
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)


def test_sensor_subset_and_unknown_sensor() -> None:
    spec = WindowSpec(sensors=["vibration", "temperature"], size=10, step=10)
    ds = simulate_windows(2, 200, 0, spec, 50)
    full = simulate_windows(2, 200, 0, WindowSpec(sensors=list(SENSORS), size=10, step=10), 50)
    assert np.array_equal(ds.X[:, :6], full.X[:, 6:12])  # vibration first, as the spec orders it
    assert np.array_equal(ds.X[:, 6:], full.X[:, :6])
    with pytest.raises(ValueError, match="no sensor"):
        simulate_windows(2, 200, 0, WindowSpec(sensors=["humidity"], size=10, step=10), 50)


def test_drifts_apply_to_all_machines_or_per_machine() -> None:
    offset = SensorOffset(sensor="pressure", offset=5.0, start_t=0)
    base = simulate_windows(2, 300, 0, SPEC, 50)
    everywhere = simulate_windows(2, 300, 0, SPEC, 50, drifts=[offset])
    one = simulate_windows(2, 300, 0, SPEC, 50, drifts={"sim-001": [offset]})
    mean = SENSORS.index("pressure") * 6  # pressure.mean
    assert np.allclose(everywhere.X[:, mean] - base.X[:, mean], 5.0, atol=1e-4)
    first = one.machine_id == "sim-000"
    assert np.array_equal(one.X[first], base.X[first])
    assert np.allclose(one.X[~first, mean] - base.X[~first, mean], 5.0, atol=1e-4)


def test_single_config_for_every_machine() -> None:
    ds = simulate_windows(3, 100, 0, SPEC, 50, config=MachineConfig(site="s9", asset_type="fan"))
    assert set(ds.cohort.tolist()) == {"s9/fan"}


def test_split_by_machine_has_no_leakage_and_keeps_every_cohort() -> None:
    ds = simulate_windows(n_machines=30, steps=300, seed=2, spec=SPEC, horizon=100)
    parts = split_by_machine(ds, (0.6, 0.2, 0.2), seed=1)
    machine_sets = [set(p.machine_id.tolist()) for p in parts]
    assert sum(len(p) for p in parts) == len(ds)
    assert set().union(*machine_sets) == set(ds.machines)
    for i, a in enumerate(machine_sets):
        for b in machine_sets[i + 1 :]:
            assert not a & b
    assert [len(m) for m in machine_sets] == [18, 6, 6]
    for p in parts:
        assert set(p.cohort.tolist()) == set(ds.cohort.tolist())
    again = split_by_machine(ds, (0.6, 0.2, 0.2), seed=1)
    assert all(np.array_equal(p.X, q.X) for p, q in zip(parts, again, strict=True))
    other = split_by_machine(ds, (0.6, 0.2, 0.2), seed=2)
    assert set(other[0].machine_id.tolist()) != machine_sets[0]


def test_split_refuses_too_few_machines_and_bad_fractions() -> None:
    ds = simulate_windows(n_machines=2, steps=100, seed=0, spec=SPEC, horizon=10)
    with pytest.raises(ValueError, match="too few"):
        split_by_machine(ds, (0.6, 0.2, 0.2), seed=0)
    with pytest.raises(ValueError, match="fractions"):
        split_by_machine(ds, (0.7, 0.2), seed=0)


def test_a_fleet_simulates_every_window() -> None:
    ds = simulate_windows(n_machines=40, steps=3000, seed=0, spec=SPEC, horizon=100)  # how fast: bench/budgets.py
    assert len(ds) == 40 * ((3000 - 30) // 5 + 1)


def test_sim_imports_no_scikit_learn_or_scipy() -> None:
    code = (
        "import sys, sim, sim.dataset, sim.machine, sim.drift, sim.physics\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'sklearn', 'scipy', 'skl2onnx'})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


@pytest.mark.parametrize("module", [sim.dataset, sim.machine])
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.failed == 0 and result.attempted > 0
