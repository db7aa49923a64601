"""Regime statistics learned from the field's raw windows, and field rows restated under them (pure: rows in,
statistics and rows out; `hub.training.regimes`)."""

from __future__ import annotations

import numpy as np
import pytest

from hub.store.rows import RawWindowRow
from hub.training.dataset import Feedback, SourceRows
from hub.training.errors import RetrainError
from hub.training.regimes import NO_RAW_WINDOW, compare_regimes, field_readings, learn_regimes, restate_feedback
from infra.datasets import CMAPSS_SENSORS
from models.regimes import fit_regimes
from shared.features import REGIMES, WindowSpec, series_features
from shared.history import CONTEXT
from tests.evaluation.synthetic import synthetic_rows
from tests.fixtures.regimes import REGIME_SETTINGS, regime_rows

SPEC = WindowSpec(sensors=list(CMAPSS_SENSORS), size=5, step=1, feature_set_version=REGIMES)
SETTINGS = ("op1", "op2", "op3")


def engines(rows: np.ndarray) -> dict[int, np.ndarray]:
    """Unit -> ``(cycles, 24)`` readings, as `models.cmapss.load_engines` gives them."""
    return {int(u): rows[rows[:, 0] == u, 2:] for u in np.unique(rows[:, 0])}


def raw_window(trace: str, device: str, unit: str, readings: np.ndarray, first: int, last: int, *,
               sensors: list[str] = CMAPSS_SENSORS, service: int | None = None) -> RawWindowRow:
    """The stored raw window of readings ``first..last`` (inclusive) of one unit, stamped 10 s per cycle, in
    `sensors` order (any order: the hub reorders)."""
    columns = [CMAPSS_SENSORS.index(s) for s in sensors]
    part = readings[first:last + 1][:, columns]
    return RawWindowRow(trace, device, "stored", 0.0, 1, 1.0, unit, tuple(sensors),
                        tuple(10.0 * c for c in range(first, last + 1)), tuple(tuple(col) for col in part.T.tolist()),
                        service)


def test_the_field_readings_are_per_unit_de_duplicated_in_time_order_and_in_the_window_sensor_order() -> None:
    x = engines(regime_rows(2, seed=3))
    shuffled = list(reversed(CMAPSS_SENSORS))
    rows = [raw_window("a", "gw-1", "1", x[1], 10, 40, sensors=shuffled),
            raw_window("b", "gw-1", "1", x[1], 0, 20),  # overlaps readings 10..20 of "a": counted once
            raw_window("c", "gw-2", "2", x[2], 5, 9),
            raw_window("d", "gw-2", "2", x[2], 0, 9, sensors=CMAPSS_SENSORS[:-1])]  # lacks s21: not used
    field = field_readings(rows, SPEC.sensors)
    assert (field.devices, field.windows, field.readings) == (2, 3, 41 + 5)
    assert np.array_equal(field.series[("gw-1", "1")], x[1][:41]) and np.array_equal(field.series[("gw-2", "2")],
                                                                                     x[2][5:10])


def test_learning_finds_the_fields_regimes_beside_the_base_sets_own() -> None:
    field_engines = engines(regime_rows(6, seed=5))  # three operating points, one of them the base set's
    rows = [raw_window(f"t{u}-{k}", f"gw-{u % 2}", str(u), r, k, min(k + 20, len(r) - 1))
            for u, r in field_engines.items() for k in range(0, len(r), 15)]
    field = field_readings(rows, SPEC.sensors)
    assert field.readings == sum(len(r) for r in field_engines.values())
    base = list(engines(synthetic_rows(4, seed=1)).values())  # one regime (as FD001): op settings ~ (0, 0, 100)
    assert fit_regimes(base, SPEC.sensors).n_regimes == 1

    stats = learn_regimes(field, base, SPEC.sensors, SETTINGS, min_readings=100, seed=7)
    assert stats.n_regimes == len(REGIME_SETTINGS)
    assert np.allclose(sorted(c[0] for c in stats.centroids), REGIME_SETTINGS[:, 0], atol=0.01)
    assert sum(stats.counts) == field.readings + sum(len(b) for b in base)  # the base set's readings count too

    with pytest.raises(RetrainError, match=rf"at least {field.readings + 1} field readings .* give {field.readings}"):
        learn_regimes(field, base, SPEC.sensors, SETTINGS, min_readings=field.readings + 1, seed=7)


def test_restated_rows_equal_the_batch_features_of_the_series_and_rows_without_a_window_are_dropped() -> None:
    series = engines(regime_rows(1, seed=8, min_life=150, max_life=150))[1]
    old = fit_regimes([series[:, :]], SPEC.sensors, settings=SETTINGS, max_regimes=1)  # the incumbent's: one regime
    new = fit_regimes([series], SPEC.sensors, settings=SETTINGS)
    assert new.n_regimes == 3 and old.n_regimes == 1
    as_scored, ends = series_features(series, SPEC, old)
    expected, _ = series_features(series, SPEC, new)
    picks = [4, 40, 100, 149]  # window ends: the first window, and ones with less or more than CONTEXT before them
    rows = [np.flatnonzero(ends == e)[0] for e in picks]
    windows = {}
    for e in picks:
        first = max(0, e - SPEC.size + 1 - CONTEXT)
        windows[f"t{e}"] = raw_window(f"t{e}", "gw", "1", series, first, e, service=first)
    windows["t100"] = raw_window("t100", "gw", "1", series, 96, 100)  # no service count: cannot be restated
    n = len(picks)
    feedback = Feedback(
        SourceRows("field", as_scored[rows].astype(np.float32), np.arange(n) % 2, np.ones(n), np.full(n, "c"),
                   np.empty(n, str), np.array([f"t{e}" for e in picks]), np.zeros(n, bool), np.ones(n, bool)),
        device_id=np.full(n, "gw"), ts=10.0 * np.array(picks, float), dropped={"field_missing_prediction": 0},
        window_s=np.full(n, 40.0))

    restated, record = restate_feedback(feedback, windows, SPEC, new)
    kept = [0, 1, 3]
    assert (record.restated, record.dropped) == (3, 1)
    assert restated.dropped == {"field_missing_prediction": 0, NO_RAW_WINDOW: 1}
    assert restated.rows.trace_id.tolist() == ["t4", "t40", "t149"] and restated.ts.tolist() == [40.0, 400.0, 1490.0]
    assert restated.rows.y.tolist() == [0, 1, 1] and len(restated.device_id) == len(restated.window_s) == 3
    assert np.allclose(restated.rows.X, expected[[rows[k] for k in kept]], rtol=0, atol=1e-4)
    assert np.array_equal(restated.rows.X[0], expected[rows[0]].astype(np.float32))  # the whole history: exact
    assert not np.allclose(restated.rows.X, as_scored[[rows[k] for k in kept]], atol=1e-2)  # other statistics
    assert np.array_equal(record.as_scored["t149"], as_scored[rows[3]].astype(np.float32))
    assert set(record.as_scored) == {"t4", "t40", "t149"}


def test_field_readings_at_an_operating_point_the_active_regimes_never_saw_are_counted_far() -> None:
    x = engines(regime_rows(4, seed=6))
    seen = {u: r[np.abs(r[:, 0] - 20.0) > 1.0] for u, r in x.items()}  # all but the middle operating point
    active = fit_regimes(seen.values(), SPEC.sensors, settings=SETTINGS)
    assert active.n_regimes == 2
    rows = [raw_window(f"t{u}", "gw", str(u), r, 0, len(r) - 1) for u, r in x.items()]
    field = field_readings(rows, SPEC.sensors)
    new = int(sum((np.abs(r[:, 0] - 20.0) < 1.0).sum() for r in x.values()))
    assert 0 < new < field.readings

    view = compare_regimes("v3", active, field, SPEC.sensors, found=None)
    assert sum(view.per_active) == field.readings and sum(view.far_per_active) == new
    assert view.far_share == pytest.approx(new / field.readings)
    body = view.to_dict()
    assert body["field"] == {"devices": 1, "windows": 4, "readings": field.readings, "far_share": view.far_share}
    assert [r["fitted_readings"] for r in body["active"]] == active.counts and body["found"] is None
    assert compare_regimes("v3", active, field_readings([], SPEC.sensors), SPEC.sensors, None).far_share is None
