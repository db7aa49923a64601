"""Training and evaluation data, pure: split keys, the hash, cohort balancing, and the sets assembled from
label and prediction rows (the store-backed build is tests/hub/training/service/test_loading.py)."""

from __future__ import annotations

import doctest
from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.store.rows import LabelItemRow, PredictionRow
from hub.training import dataset
from hub.training.dataset import (
    SimSpec,
    SourceRows,
    assemble_datasets,
    balance_cohort_weights,
    feedback_rows,
    hash_fraction,
    propose_eval_split,
    split_keys,
)
from tests.hub.training.conftest import training_settings


def _item(trace_id: str, label: int, cohort: str | None = "site-a") -> LabelItemRow:
    return LabelItemRow(trace_id=trace_id, device_id="d1", label=label, weight=1.0, confidence=1.0,
                        n_annotations=1, cohort=cohort, model_version="v1")


def _prediction(trace_id: str, ts: float, n_features: int = 2, reason: str | None = "random") -> PredictionRow:
    return PredictionRow(trace_id=trace_id, msg_id=f"m-{trace_id}", kind="sample", device_id="d1", ts=ts,
                         received_at=ts, model_version="v1", unit=None, window_start=ts - 3, window_end=ts,
                         score=0.1, threshold=0.5, decision=False, reason=reason, features=(0.5,) * n_features)


def test_feedback_joins_labels_to_features_and_counts_what_it_drops() -> None:
    items = [_item("t1", 1), _item("t2", 0, cohort=None), _item("t3", 0), _item("t4", 1)]
    predictions = {"t1": _prediction("t1", 10.0), "t2": _prediction("t2", 20.0, reason=None),
                   "t4": _prediction("t4", 30.0, n_features=3)}
    fb = feedback_rows(items, predictions, 2, feedback_weight=2.0)
    assert fb.rows.trace_id.tolist() == ["t1", "t2"] and fb.rows.X.shape == (2, 2)
    assert fb.rows.weight.tolist() == [2.0, 2.0] and fb.rows.cohort.tolist() == ["site-a", "unknown"]
    assert fb.rows.unbiased.tolist() == [True, False]
    assert fb.dropped == {"field_missing_prediction": 1, "field_wrong_feature_count": 1}


def test_feedback_rows_come_in_data_order_whatever_the_trace_ids() -> None:
    # trace ids are the agents' scoring clocks: two runs of the same replay give them in another order
    ends = {"a": 30.0, "b": 10.0, "c": 20.0}
    predictions = {t: _prediction(t, ts) for t, ts in ends.items()}
    once = feedback_rows([_item(t, 1) for t in "abc"], predictions, 2, 1.0)
    again = feedback_rows([_item(t, 1) for t in "cab"], predictions, 2, 1.0)
    assert once.rows.trace_id.tolist() == again.rows.trace_id.tolist() == ["b", "c", "a"]
    assert once.ts.tolist() == [10.0, 20.0, 30.0]


def test_assembled_sets_keep_the_slice_apart_and_count_it() -> None:
    items = [_item(f"t{i}", i % 2) for i in range(20)]
    fb = feedback_rows(items, {f"t{i}": _prediction(f"t{i}", 100.0 * i) for i in range(20)}, 2, 1.0)
    keys = split_keys(fb, 300.0)
    assert keys[0] == "d1@0" and keys[3] == "d1@1"
    proposed = propose_eval_split(fb.rows.trace_id, keys, 0.5)
    in_eval = np.array([proposed[t] for t in fb.rows.trace_id.tolist()])
    spec = SimSpec(n_machines=1, steps=1, horizon=1, seed=0)
    built = assemble_datasets(spec, SourceRows.empty("sim", 2), fb, keys, in_eval, label_set_id="ls",
                              settings=training_settings(), max_cohort_share=0.5)
    assert not set(built.evaluation.trace_id.tolist()) & set(built.training.field.trace_id.tolist())
    assert len(built.evaluation) + len(built.training.field) == 20 and built.training.data_kind == "real"
    assert built.evaluation.groups.tolist() == keys[in_eval].tolist()
    assert built.counts["eval"] == len(built.evaluation) and built.counts["sim"] == 0


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


def test_split_keys_follow_data_time_not_when_the_window_was_scored_or_received() -> None:
    """The same windows scored at another wall-clock moment (a loaded machine, a replay, a backlog) keep their
    split keys: the frozen slice depends on the data, not on timing."""
    items = [_item(f"t{i}", i % 2) for i in range(10)]
    on_time = {f"t{i}": _prediction(f"t{i}", 1000.0 + 100.0 * i) for i in range(10)}
    late = {t: replace(p, ts=p.ts + 12_345.6 * (i + 1), received_at=p.ts + 99_999.0)
            for i, (t, p) in enumerate(on_time.items())}
    keys = [split_keys(feedback_rows(items, rows, 2, 1.0), 300.0).tolist() for rows in (on_time, late)]
    assert keys[0] == keys[1] and keys[0][:4] == ["d1@3", "d1@3", "d1@4", "d1@4"]
