"""A small model trained from the simulator, shared by the models tests (the estimator, not just files)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from models.onnx_export import to_onnx_bytes
from models.training import positive_scores, select_threshold, train_classifier
from shared.features import WindowSpec
from sim import SENSORS, SimDataset, simulate_windows, split_by_machine

SPEC = WindowSpec(sensors=list(SENSORS), size=30, step=5)


@dataclass(frozen=True)
class SmallModel:
    estimator: Any
    onnx_bytes: bytes
    threshold: float
    train: SimDataset
    val: SimDataset
    hold: SimDataset


@pytest.fixture(scope="session")
def small_model() -> SmallModel:
    ds = simulate_windows(n_machines=15, steps=2000, seed=11, spec=SPEC, horizon=100)
    train, val, hold = split_by_machine(ds, seed=11)
    estimator = train_classifier(train.X, train.y, seed=11, params={"n_estimators": 60})
    threshold = select_threshold(val.y, positive_scores(estimator, val.X))
    return SmallModel(estimator, to_onnx_bytes(estimator, SPEC.n_features), threshold, train, val, hold)
