"""Fitting feature set 2's regime statistics (scikit-learn's k-means, on the training side only)."""

from __future__ import annotations

import numpy as np
import pytest

from hub.training.base_sets import base_set
from hub.training.errors import RetrainError
from hub.training.settings import TrainingSettings
from infra.datasets import CMAPSS_SENSORS
from models.cli import summarize
from models.cmapss import build_cmapss, engine_windows, load_engines
from models.regimes import fit_regimes
from shared.features import REGIMES, WindowSpec, feature_names
from shared.wire import replace
from tests.evaluation.synthetic import write_cmapss
from tests.fixtures.regimes import REGIME_SETTINGS, regime_rows


def test_fit_regimes_finds_the_regimes_and_one_in_mere_jitter():
    rows = regime_rows(6, seed=5)
    engines = {u: rows[rows[:, 0] == u, 2:] for u in np.unique(rows[:, 0])}
    stats = fit_regimes(engines.values(), CMAPSS_SENSORS)
    assert stats.n_regimes == len(REGIME_SETTINGS) and sum(stats.counts) == sum(len(e) for e in engines.values())
    assert np.allclose(sorted(c[0] for c in stats.centroids), REGIME_SETTINGS[:, 0], atol=0.01)
    jitter = [e.copy() for e in engines.values()]
    for e in jitter:
        e[:, :3] = np.random.default_rng(0).normal([0.0, 0.0, 100.0], [0.002, 0.0002, 0.0], (len(e), 3))
    assert fit_regimes(jitter, CMAPSS_SENSORS).n_regimes == 1


def test_a_setting_that_only_jitters_does_not_merge_the_regimes_the_others_show():
    """op3 recorded as 100 with sensor noise, op1 and op2 moving between three operating points: divided by its own
    spread, op3's noise weighed as much as they do and no k met the tolerance (one regime). Now the regimes are found,
    op3 sits at its mean in each centroid, and every reading lands in the regime of its operating point."""
    rows = regime_rows(6, seed=5)
    engines = [rows[rows[:, 0] == u, 2:].copy() for u in np.unique(rows[:, 0])]
    rng = np.random.default_rng(1)
    for e in engines:
        e[:, 2] = 100.0 + rng.normal(0.0, 0.001, len(e))
    stats = fit_regimes(engines, CMAPSS_SENSORS)
    assert stats.n_regimes == len(REGIME_SETTINGS)
    assert np.allclose([c[0] for c in stats.centroids], REGIME_SETTINGS[:, 0], atol=0.01)
    assert len({c[2] for c in stats.centroids}) == 1 and abs(stats.centroids[0][2] - 100.0) < 0.001
    every = np.concatenate(engines)
    point = np.argmin(np.abs(every[:, :1] - REGIME_SETTINGS[:, 0]), axis=1)  # the operating point each reading had
    assert sorted(stats.counts) == sorted(np.bincount(point).tolist())


def test_a_feature_set_2_parent_windows_the_cmapss_base_set_with_its_regimes(tmp_path):
    window = WindowSpec(sensors=list(CMAPSS_SENSORS), size=5, step=3, feature_set_version=REGIMES)
    path = write_cmapss(tmp_path / "train_REG.txt", regime_rows(6, seed=2))
    v2 = build_cmapss(tmp_path / "v2", path=path, window=window, params={"n_estimators": 5})
    assert v2.regimes is not None and len(v2.feature_names) == window.n_features
    assert "regimes      3 over op1, op2, op3" in summarize(v2)  # `fleetloop models show`
    _, rows = base_set(v2, TrainingSettings(), window)
    engines = load_engines(path)
    assert np.array_equal(rows.X, engine_windows(engines, sorted(engines), window, 30, v2.regimes).X)
    with pytest.raises(RetrainError, match="feature set 1 only"):
        base_set(v2, TrainingSettings(base_set="sim"), window)
    with pytest.raises(ValueError, match="only with it"):  # a feature-set-1 manifest carries no regimes
        replace(v2, window=replace(window, feature_set_version=1), feature_names=feature_names(CMAPSS_SENSORS))
