"""Training, threshold selection and metrics: seeded, exact where the maths allows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from models.errors import TrainingError
from models.training import (
    DEFAULT_PARAMS,
    classification_metrics,
    cohort_metrics,
    model_params,
    positive_scores,
    select_threshold,
    train_classifier,
)
from shared.errors import ConfigError
from tests.models.conftest import SmallModel


def test_select_threshold_maximises_f1_halfway_between_scores() -> None:
    y = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    # flagging {0.8, 0.4, 0.35} gives F1 0.8, the best; the cut sits between 0.35 and 0.1
    assert select_threshold(y, scores) == pytest.approx(0.225)


def test_select_threshold_prefers_fewer_alarms_on_ties_and_handles_equal_scores() -> None:
    assert select_threshold(np.array([1, 0]), np.array([0.9, 0.9])) == pytest.approx(0.45)
    assert select_threshold(np.array([1, 0, 0]), np.array([0.9, 0.5, 0.1])) == pytest.approx(0.7)


def test_select_threshold_needs_positives() -> None:
    with pytest.raises(TrainingError, match="no positives"):
        select_threshold(np.zeros(5), np.linspace(0, 1, 5))


def test_classification_metrics_exact() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.2, 0.7, 0.1, 0.1, 0.3, 0.05])
    m = classification_metrics(y, s, 0.5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["false_alarm_rate"] == pytest.approx(1 / 5)
    assert m["roc_auc"] == pytest.approx(13 / 15)  # 13 of 15 positive-negative pairs ordered
    assert (m["n"], m["n_positive"], m["positive_rate"]) == (8.0, 3.0, 3 / 8)


def test_metrics_without_alarms_or_one_class_are_defined() -> None:
    m = classification_metrics(np.array([0, 0, 0]), np.array([0.1, 0.2, 0.3]), 0.5)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["false_alarm_rate"] == 0.0
    assert "roc_auc" not in m


def test_cohort_metrics_split_by_cohort() -> None:
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.1, 0.2, 0.8])
    out = cohort_metrics(y, s, 0.5, np.array(["a", "a", "b", "b"]))
    assert list(out) == ["a", "b"]
    assert out["a"]["f1"] == 1.0 and out["b"]["f1"] == 0.0 and out["b"]["false_alarm_rate"] == 1.0


def test_same_seed_same_model(small_model: SmallModel) -> None:
    again = train_classifier(small_model.train.X, small_model.train.y, seed=11, params={"n_estimators": 60})
    assert np.array_equal(
        positive_scores(again, small_model.hold.X), positive_scores(small_model.estimator, small_model.hold.X)
    )


def test_the_small_model_predicts_simulated_failures(small_model: SmallModel) -> None:
    scores = positive_scores(small_model.estimator, small_model.hold.X)
    m = classification_metrics(small_model.hold.y, scores, small_model.threshold)
    assert m["roc_auc"] > 0.95 and m["f1"] > 0.6 and m["false_alarm_rate"] < 0.1


def test_sample_weight_changes_the_fit(small_model: SmallModel) -> None:
    train = small_model.train
    weights = np.where(train.y == 1, 5.0, 1.0)
    weighted = train_classifier(train.X, train.y, seed=11, sample_weight=weights, params={"n_estimators": 60})
    base = positive_scores(small_model.estimator, small_model.hold.X)
    assert positive_scores(weighted, small_model.hold.X).mean() > base.mean()


def test_random_forest_family(small_model: SmallModel) -> None:
    rf = train_classifier(
        small_model.train.X, small_model.train.y, seed=1, family="rf", params={"n_estimators": 20}
    )
    assert isinstance(rf, RandomForestClassifier)
    assert rf.n_jobs == 1


@pytest.mark.parametrize(
    ("y", "weights", "match"),
    [
        (np.zeros(10), None, "both classes"),
        (np.r_[np.zeros(5), np.full(5, 2)], None, "0/1"),
        (np.r_[np.zeros(5), np.ones(5)], -np.ones(10), "sample_weight"),
    ],
)
def test_training_refuses_unusable_data(y: np.ndarray, weights: np.ndarray | None, match: str) -> None:
    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    with pytest.raises(TrainingError, match=match):
        train_classifier(X, y, seed=0, sample_weight=weights)


def test_training_refuses_nan_features() -> None:
    X = np.ones((4, 2), dtype=np.float32)
    X[0, 0] = np.nan
    with pytest.raises(TrainingError, match="NaN"):
        train_classifier(X, np.array([0, 1, 0, 1]), seed=0)


def test_unknown_family_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="gbc"):
        model_params("hgb")
    assert model_params("gbc", {"max_depth": 2})["max_depth"] == 2
    assert DEFAULT_PARAMS["gbc"]["max_depth"] == 3  # defaults are not mutated
