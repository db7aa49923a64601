"""Fitting feature set 2's regime statistics (scikit-learn's k-means, on the training side only)."""

from __future__ import annotations

import numpy as np

from infra.datasets import CMAPSS_SENSORS
from models.regimes import fit_regimes
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
