"""What a retrain reads from the store: the label set and its predictions for the training set, the frozen
evaluation slice (stored the first time a trace is seen, split with a block adapted to the traffic, and
judged by k-fold by device when it is too small: `hub.training.split`), and the incumbent's drift reports and served
decisions for the false-alarm floor. The logic over those rows is pure: `hub.training.dataset`,
`hub.training.far_floor`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hub.gate.verdict import FarFloor
from hub.store.ports import HubStore
from hub.training.base_sets import base_set
from hub.training.dataset import (
    Datasets,
    EvalSet,
    Feedback,
    assemble_datasets,
    feedback_rows,
    propose_eval_split,
    split_keys,
)
from hub.training.errors import UnknownLabelSetError
from hub.training.far_floor import floor_from_decisions, healthy_cohorts, onset_from_reports
from hub.training.settings import TrainingSettings
from hub.training.split import SplitPlan, adaptive_block, choose_method
from shared.manifest import ModelManifest

_REPORTS = 1000


def load_feedback(store: HubStore, label_set_id: str, n_features: int, feedback_weight: float) -> Feedback:
    """The label set's usable labels as field rows; UnknownLabelSetError when there is no such label set."""
    if store.label_set(label_set_id) is None:
        raise UnknownLabelSetError(f"no label set {label_set_id}")
    items = store.label_set_items(label_set_id)
    predictions = {p.trace_id: p for p in store.predictions_by_trace([i.trace_id for i in items])}
    return feedback_rows(items, predictions, n_features, feedback_weight)


def freeze_eval_split(
    store: HubStore, trace_ids: np.ndarray, keys: np.ndarray, *, fraction: float, now: float
) -> np.ndarray:
    """Which traces are in the evaluation slice: stored assignments win, new traces are hashed and stored."""
    stored = store.freeze_eval_slice(propose_eval_split(trace_ids, keys, fraction), ts=now)
    return np.array([stored[str(t)] for t in trace_ids], dtype=bool)


def build_datasets(
    store: HubStore,
    *,
    label_set_id: str,
    parent: ModelManifest,
    settings: TrainingSettings,
    max_cohort_share: float,
    now: float,
) -> Datasets:
    """The training set and the frozen evaluation slice for one label set and one parent model."""
    window = parent.window
    spec, sim = base_set(parent, settings, window)  # "sim" (the simulator) or "cmapss:<file>"
    feedback = load_feedback(store, label_set_id, window.n_features, settings.feedback_weight)
    block = adaptive_block(feedback.device_id, feedback.ts, feedback.window_s, configured=settings.split_block_s,
                           target_blocks=settings.split_target_blocks)
    keys = split_keys(feedback, block.block_s)
    in_eval = freeze_eval_split(store, feedback.rows.trace_id, keys, fraction=settings.eval_fraction, now=now)
    data = assemble_datasets(spec, sim, feedback, keys, in_eval, label_set_id=label_set_id, settings=settings,
                             max_cohort_share=max_cohort_share)
    g = settings.gate
    plan = choose_method(block, eval_y=data.evaluation.y, eval_groups=data.evaluation.groups, all_y=feedback.rows.y,
                         all_groups=keys, all_devices=feedback.device_id, max_folds=settings.kfold_max_folds,
                         minimums=(g.min_positives, g.min_negatives, g.min_positive_blocks, g.min_negative_blocks))
    return replace(data, split=plan)


def drift_onset(store: HubStore, version: str) -> float | None:
    """Start of the window of the first report of `version`'s current fleet-wide drift run; None when its
    latest conclusive verdict (drift or no_drift) is not drift, or there is none."""
    return onset_from_reports(store.drift_reports(limit=_REPORTS, scope=f"fleet@{version}"))  # newest first


def far_before_drift(store: HubStore, incumbent: str, label_set_id: str, *, min_negatives: int,
                     min_cohort_negatives: int) -> FarFloor | None:
    """The incumbent's false-alarm rate on this fleet before its current drift, overall and per cohort (the
    label set's cohorts, as the evaluation slice names them); None when it has not drifted."""
    onset = drift_onset(store, incumbent)
    if onset is None:
        return None
    healthy = healthy_cohorts(store.label_set_items(label_set_id))
    return floor_from_decisions(incumbent, onset, healthy, store.predictions_by_trace(list(healthy)),
                                min_negatives=min_negatives, min_cohort_negatives=min_cohort_negatives)


def frozen_slice(store: HubStore, label_set_id: str | None, n_features: int, settings: TrainingSettings, *,
                 now: float) -> tuple[EvalSet, SplitPlan]:
    """The frozen evaluation slice of a label set (new traces assigned as a retrain would), without a training
    set: what a model made elsewhere is gated on. No k-fold (it cannot be refitted); None: no label set yet."""
    empty = np.empty(0, str)
    if label_set_id is None:
        feedback = feedback_rows([], {}, n_features, settings.feedback_weight)
    else:
        feedback = load_feedback(store, label_set_id, n_features, settings.feedback_weight)
    block = adaptive_block(feedback.device_id, feedback.ts, feedback.window_s, configured=settings.split_block_s,
                           target_blocks=settings.split_target_blocks)
    keys = split_keys(feedback, block.block_s) if len(feedback.rows) else empty
    in_eval = freeze_eval_split(store, feedback.rows.trace_id, keys, fraction=settings.eval_fraction, now=now)
    rows = feedback.rows
    evaluation = EvalSet(X=rows.X[in_eval], y=rows.y[in_eval], cohort=rows.cohort[in_eval],
                         trace_id=rows.trace_id[in_eval], device_id=feedback.device_id[in_eval], groups=keys[in_eval])
    g = settings.gate
    plan = choose_method(block, eval_y=evaluation.y, eval_groups=evaluation.groups, all_y=rows.y, all_groups=keys,
                         all_devices=feedback.device_id, max_folds=0,
                         minimums=(g.min_positives, g.min_negatives, g.min_positive_blocks, g.min_negative_blocks))
    return evaluation, plan
