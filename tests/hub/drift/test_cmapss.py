"""Drift detection on real data: NASA C-MAPSS turbofan run-to-failure sets FD001 and FD002.

Each engine is a device and each cycle a window; features are the 21 raw sensor readings s1…s21 (the
manifest's window features would work the same way, raw readings keep the test simple). Reference bin
edges are deciles of FD001 (`hub.drift.edges`). Six FD001 sensors never move (s1, s5, s10, s16, s18,
s19): their edges are ``v ± 1e-6·|v|``, so FD001 fills the middle bin and any departure fills an outer one.

FD001 runs at one operating condition (sea level), FD002 at six, so FD002 must drift on every sensor
whose reading depends on the regime — all 21 of them, the least affected being s13 (PSI ≈ 0.59) — while
FD002 restricted to FD001's own regime, and one half of FD001 against the other, must not drift.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from hub.drift import Sketch, drift_report, fleet_reports
from hub.drift.edges import reference_edges_matrix
from tests.fixtures.data import datasets_folder, require_files

pytestmark = pytest.mark.dataset

SENSORS = [f"s{i}" for i in range(1, 22)]
SENSOR_COLUMNS = slice(5, 26)  # unit, cycle, op1, op2, op3, then s1..s21
FD001_CONSTANT = ["s1", "s5", "s10", "s16", "s18", "s19"]
FD002_DRIFTED = SENSORS  # measured: every sensor moves with the operating regime


@pytest.fixture(scope="module")
def cmapss() -> dict[str, np.ndarray]:
    folder = require_files(datasets_folder() / "cmapss", ("train_FD001.txt", "train_FD002.txt"), "C-MAPSS")
    return {name: np.loadtxt(folder / f"train_{name}.txt") for name in ("FD001", "FD002")}


@pytest.fixture(scope="module")
def edges(cmapss: dict[str, np.ndarray]) -> list[np.ndarray]:
    return reference_edges_matrix(cmapss["FD001"][:, SENSOR_COLUMNS])


def sketch(rows: np.ndarray, edges: list[np.ndarray]) -> Sketch:
    return Sketch.from_values(rows[:, SENSOR_COLUMNS], edges)


def by_engine(rows: np.ndarray, edges: list[np.ndarray]) -> dict[str, Sketch]:
    return {f"engine-{int(u):03d}": sketch(rows[rows[:, 0] == u], edges) for u in np.unique(rows[:, 0])}


def test_constant_fd001_sensors_get_a_narrow_middle_bin(cmapss: dict[str, np.ndarray], edges: list[np.ndarray]) -> None:
    readings = cmapss["FD001"][:, SENSOR_COLUMNS]
    constant = [name for j, name in enumerate(SENSORS) if np.ptp(readings[:, j]) == 0]
    assert constant == FD001_CONSTANT
    ref = sketch(cmapss["FD001"], edges)
    for name in FD001_CONSTANT:
        j = SENSORS.index(name)
        assert len(edges[j]) == 2
        assert ref.feature_hist[j, :3].tolist() == [0, len(readings), 0]


def test_fd002_operating_regimes_drift_every_sensor(cmapss: dict[str, np.ndarray], edges: list[np.ndarray]) -> None:
    reference = sketch(cmapss["FD001"], edges)
    devices = by_engine(cmapss["FD002"], edges)
    cohorts = {device: "FD002" for device in devices}
    reports = fleet_reports(reference, devices, cohorts, SENSORS)
    fleet, cohort = reports[0], reports[1]
    assert (fleet.scope, fleet.verdict, cohort.scope) == ("fleet", "drift", "cohort:FD002")
    assert fleet.drifted_features == FD002_DRIFTED
    assert min(f.psi for f in fleet.features) > 0.5
    assert cohort.to_dict()["features"] == fleet.to_dict()["features"]
    # Every engine long enough to judge drifts on its own; the short ones are not judged at all.
    verdicts = Counter(r.verdict for r in reports[2:])
    assert set(verdicts) == {"drift", "insufficient_data"}
    assert verdicts["drift"] == sum(1 for s in devices.values() if s.windows >= fleet.min_samples)


def test_fd002_in_fd001s_own_regime_does_not_drift(cmapss: dict[str, np.ndarray], edges: list[np.ndarray]) -> None:
    fd002 = cmapss["FD002"]
    sea_level = fd002[(np.abs(fd002[:, 2]) < 1.0) & (fd002[:, 4] == 100.0)]  # op1 ≈ 0, op3 = 100
    report = drift_report(sketch(cmapss["FD001"], edges), sketch(sea_level, edges), SENSORS, scope="FD002@sea-level")
    assert report.n_current == 8044
    assert report.verdict == "no_drift"
    assert max(f.psi for f in report.features) < 0.1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fd001_halves_raise_no_false_alarm(cmapss: dict[str, np.ndarray], edges: list[np.ndarray], seed: int) -> None:
    fd001 = cmapss["FD001"]
    engines = np.random.default_rng(seed).permutation(np.unique(fd001[:, 0]))
    in_reference = np.isin(fd001[:, 0], engines[:50])
    reports = fleet_reports(sketch(fd001[in_reference], edges), by_engine(fd001[~in_reference], edges), {}, SENSORS)
    fleet = reports[0]
    assert fleet.verdict == "no_drift"
    assert fleet.drifted_features == []
    assert max(f.psi for f in fleet.features) < 0.2
    # Cycles of one engine are not independent draws, so the tests alone would cry wolf: only the
    # effect-size gate keeps these significant-but-immaterial differences from becoming alarms.
    assert sum(f.p_adjusted <= fleet.alpha for f in fleet.features) >= 3
