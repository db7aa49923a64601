"""`fleetloop eval cmapss --feature-set`: the choice is validated, and set 2's v1 is commissioned with regime
statistics from the training file and the feedback engines' unlabelled readings, never the evaluation engines'."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fleetloop.evaluation.loop import commissioned_regimes
from fleetloop.evaluation.plan import plan_fleet
from fleetloop.evaluation.settings import config_for
from infra.datasets import CMAPSS_SENSORS
from models.cmapss import load_engines
from shared.errors import ConfigError
from shared.features import REGIMES, WindowSpec
from tests.evaluation.synthetic import synthetic_rows, write_cmapss
from tests.fixtures.regimes import REGIME_SETTINGS, regime_rows


def test_feature_set_is_validated() -> None:
    assert config_for("fast", Path("."), feature_set=2).feature_set == 2
    assert config_for("fast", Path(".")).feature_set == 1
    assert config_for("default", Path(".")).feature_set == 2  # the full run measures set 2; --fast keeps set 1
    assert config_for("default", Path("."), feature_set=1).feature_set == 1
    with pytest.raises(ConfigError, match="--feature-set"):
        config_for("fast", Path("."), feature_set=3)


def test_v1_regimes_come_from_the_training_file_and_the_feedback_engines_only(tmp_path: Path) -> None:
    write_cmapss(tmp_path / "train_ONE.txt", synthetic_rows(4, seed=1))  # one regime, as FD001
    fleet_file = write_cmapss(tmp_path / "train_REG.txt", regime_rows(8, seed=4))
    config = config_for("fast", tmp_path, train_ref="train_ONE.txt", fleet="train_REG.txt", feature_set=2)
    fleet = load_engines(fleet_file)
    plan = plan_fleet({u: len(r) for u, r in fleet.items()}, devices=2, seed=7, feedback_fraction=0.5,
                      n_engines=None)
    window = WindowSpec(sensors=list(CMAPSS_SENSORS), size=5, step=2, feature_set_version=REGIMES)
    stats = commissioned_regimes(config, plan, fleet, window)
    assert stats is not None and stats.n_regimes == len(REGIME_SETTINGS)  # the field's regimes, not the file's one
    reference = load_engines(tmp_path / "train_ONE.txt")
    used = sum(len(r) for r in reference.values()) + sum(len(fleet[u]) for u in plan.feedback_units)
    assert sum(stats.counts) == used and plan.evaluation_units
    assert commissioned_regimes(config, plan, fleet, WindowSpec(sensors=list(CMAPSS_SENSORS), size=5, step=2)) \
        is None
    assert np.isfinite(np.asarray(stats.mean)).all()
