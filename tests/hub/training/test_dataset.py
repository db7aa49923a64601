"""Training and evaluation data: the evaluation slice is frozen and disjoint from training; sources stay apart."""

from __future__ import annotations

import doctest
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.labels.service import LabelSettings, validate_and_save
from hub.store.rows import IngestRecord
from hub.training import dataset
from hub.training.dataset import balance_cohort_weights, build_datasets, hash_fraction, split_key
from models.onnx_export import onnx_scores, onnx_session
from models.version import read_version
from sim.dataset import simulate_windows
from tests.hub.training.conftest import DRIFT, World, build_world, fleet_messages, training_settings


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, initial_model_dir: Path) -> Iterator[World]:
    world = build_world(tmp_path_factory.mktemp("hub"), initial_model_dir, n_machines=4, steps=1500)
    yield world
    world.store.close()


def _build(world: World, label_set_id: str, **overrides: object) -> dataset.Datasets:
    parent = world.registry.manifest("v1")
    assert parent is not None
    return build_datasets(world.store, label_set_id=label_set_id, parent=parent,
                          settings=training_settings(**overrides), max_cohort_share=0.5, now=world.clock())


def test_the_evaluation_slice_is_frozen_and_disjoint_from_training(small: World) -> None:
    first = _build(small, small.label_set_id)
    evaluation, field_rows = set(first.evaluation.trace_id.tolist()), set(first.training.field.trace_id.tolist())
    assert not evaluation & field_rows
    assert len(evaluation | field_rows) == len(small.fleet)  # every label on one side
    assert 0.15 < len(evaluation) / len(small.fleet) < 0.45  # ~30%, in blocks
    assert {t for t, _ in small.store.eval_slice()} == evaluation

    # Membership never moves: not on a rebuild, not when the fraction changes.
    again = _build(small, small.label_set_id, eval_fraction=0.6)
    assert set(again.evaluation.trace_id.tolist()) == evaluation
    assert set(again.training.field.trace_id.tolist()) == field_rows

    # New traffic is assigned on first sight; old traces keep their side.
    parent_manifest, onnx = read_version(small.registry.path("v1"))
    later = simulate_windows(5, 1500, 99, parent_manifest.window, 100, drifts=[DRIFT])
    later = later.subset(later.machine_id == "sim-004")  # a machine the hub has not seen
    scores = onnx_scores(onnx_session(onnx), later.X)
    small.store.ingest_batch([IngestRecord(m, small.clock()) for m in
                              fleet_messages(later, scores, parent_manifest.threshold, t0=small.clock() - 20_000)])
    label_set = validate_and_save(small.store, LabelSettings(), now=small.clock()).row.id
    third = _build(small, label_set)
    new_eval = set(third.evaluation.trace_id.tolist())
    assert new_eval & evaluation == evaluation
    assert not new_eval & set(third.training.field.trace_id.tolist())
    assert any(t.startswith("sim-004") for t in new_eval)


def test_a_device_block_falls_on_one_side(small: World) -> None:
    built = _build(small, small.label_set_id)
    predictions = {p.trace_id: p for p in small.store.predictions_by_trace(built.evaluation.trace_id.tolist())}
    eval_blocks = {split_key(p.device_id, p.ts, p.trace_id, 600.0) for p in predictions.values()}
    assert not eval_blocks & set(built.training.field.group.tolist())


def test_sources_stay_apart_with_their_counts(small: World) -> None:
    built = _build(small, small.label_set_id)
    ts = built.training
    assert ts.data_kind == "mixed"
    assert set(ts.sim.trace_id.tolist()) == {""} and "" not in set(ts.field.trace_id.tolist())
    assert ts.source.tolist() == ["sim"] * len(ts.sim) + ["field"] * len(ts.field)
    assert ts.X.shape == (len(ts), 36) and ts.X.dtype == np.float32
    sim_desc, field_desc = ts.descriptions
    assert sim_desc.startswith("sim:n_machines=30,steps=2500,horizon=100,seed=7") and f"rows={len(ts.sim)}" in sim_desc
    assert f"rows={len(ts.field)}" in field_desc and f"eval_rows={len(built.evaluation)}" in field_desc
    # Field weights: the label's weight × feedback_weight, then no cohort above half of the field weight.
    shares = {c: ts.field.weight[ts.field.cohort == c].sum() / ts.field.weight.sum() for c in set(ts.field.cohort)}
    assert max(shares.values()) <= 0.5 + 1e-9
    assert ts.field.weight.max() == pytest.approx(2.0)  # confirmed labels weigh 1, uncapped cohort keeps it

    no_sim = _build(small, small.label_set_id, sim_weight=0.0)
    assert no_sim.training.data_kind == "real" and len(no_sim.training.sim) == 0


def test_hash_fraction_is_roughly_uniform() -> None:
    values = np.array([hash_fraction(f"dev-{i}", "salt") for i in range(4000)])
    assert values.min() >= 0.0 and values.max() < 1.0
    assert abs(float(np.mean(values < 0.3)) - 0.3) < 0.03
    assert hash_fraction("dev-1", "a") != hash_fraction("dev-1", "b")


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=6),
    max_share=st.floats(min_value=0.05, max_value=1.0),
)
def test_balancing_caps_every_cohort_and_never_raises_a_weight(sizes: list[int], max_share: float) -> None:
    cohorts = np.concatenate([np.full(n, f"c{i}") for i, n in enumerate(sizes)])
    weights = np.linspace(0.1, 1.0, cohorts.size)
    out = balance_cohort_weights(weights, cohorts, max_share)
    assert np.all(out <= weights + 1e-12) and np.all(out > 0)
    if len(sizes) > 1:
        limit = max(max_share, 1.0 / len(sizes))
        for name in set(cohorts.tolist()):
            assert out[cohorts == name].sum() / out.sum() <= limit + 1e-9
    else:
        assert np.array_equal(out, weights)


def test_doctests() -> None:
    assert doctest.testmod(dataset).failed == 0
