"""The gate's block bootstrap on a retrain's real evaluation slice: the slice carries its blocks (the split key),
and judged by blocks the drift-fix candidate still passes and the flipped-label candidate still fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.gate.verdict import GateDecision, GateInput, ParityNumbers, evaluate_gate, metrics_on_slice, paired_slice
from hub.labels.service import LabelSettings
from hub.training.dataset import Datasets, split_key
from hub.training.evaluate import score
from hub.training.service.loading import build_datasets
from models.version import read_version
from tests.hub.training.conftest import World, build_world, training_settings

OK_PARITY = ParityNumbers(max_abs_diff=0.0, label_flips=0, passed=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, initial_model_dir: Path) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("hub"), initial_model_dir)
    yield w
    w.store.close()


def _datasets(world: World) -> Datasets:
    parent = world.registry.manifest("v1")
    assert parent is not None
    return build_datasets(world.store, label_set_id=world.label_set_id, parent=parent, settings=training_settings(),
                          max_cohort_share=LabelSettings().max_cohort_share, now=world.clock())


def _judge(world: World, version: str) -> GateDecision:
    """`version` against v1 on the frozen slice, as the retrain's gate does, with the slice's blocks."""
    evaluation = _datasets(world).evaluation
    (m_cand, b_cand), (m_inc, b_inc) = (read_version(world.registry.path(v)) for v in (version, "v1"))
    s_cand, s_inc = score(b_cand, evaluation.X), score(b_inc, evaluation.X)
    thresholds = (m_cand.threshold, m_inc.threshold)
    cand, inc, tables = metrics_on_slice(evaluation.y, s_cand, s_inc, thresholds, evaluation.cohort)
    paired = paired_slice(evaluation.y, s_cand, s_inc, thresholds, blocks=evaluation.groups, cohorts=evaluation.cohort)
    return evaluate_gate(GateInput(cand, inc, OK_PARITY, 1.0, tables.candidate, tables.incumbent, paired))


def test_the_evaluation_slice_carries_each_traces_block(world: World) -> None:
    evaluation = _datasets(world).evaluation
    predictions = {p.trace_id: p for p in world.store.predictions_by_trace(evaluation.trace_id.tolist())}
    expected = [split_key(predictions[t].device_id, predictions[t].ts, t, 600.0) for t in evaluation.trace_id]
    assert evaluation.groups.tolist() == expected
    assert len(set(expected)) < len(evaluation) / 10  # overlapping windows: many per block


def test_judged_by_blocks_the_drift_fix_passes_and_the_sabotage_fails(world: World) -> None:
    fixed = world.service().retrain_now(actor="test", reason="drift", now=world.clock(),
                                        label_set_id=world.label_set_id)
    sabotaged = world.service(label_transform=lambda y: 1 - y).retrain_now(
        actor="test", reason="sabotage", now=world.clock(), label_set_id=world.label_set_id)
    good, bad = _judge(world, fixed.result_version or ""), _judge(world, sabotaged.result_version or "")
    # 197 positive windows, but from 24 blocks: the evidence the intervals are made of
    assert good.bootstrap is not None and good.candidate.n_pos == 197
    assert (good.bootstrap.n_blocks, good.bootstrap.positive_blocks, good.bootstrap.negative_blocks) == (146, 24, 139)
    assert good.verdict == "pass", good.reasons
    recall = good.check("recall")
    assert recall.value < -0.2 and recall.ci_high < 0  # significantly better, not just on this slice
    assert bad.verdict == "fail"
    failed = {c.name for c in bad.checks if not c.passed}
    assert {"recall", "false_alarm_rate"} <= failed
    assert bad.check("recall").ci_low > 0 and bad.check("false_alarm_rate").ci_low > 0.9
