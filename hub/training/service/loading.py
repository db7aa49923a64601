"""What a retrain reads from the store: the label set and its predictions for the training set, the frozen
evaluation slice (stored the first time a trace is seen, split with a block adapted to the traffic, and
judged by k-fold by device when it is too small: `hub.training.split`), the incumbent's drift reports and served
decisions for the false-alarm floor, and the devices' raw windows when regime statistics are learned from the field.
The logic over those rows is pure: `hub.training.dataset`, `hub.training.far_floor`, `hub.training.regimes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from hub.gate.verdict import FarFloor
from hub.store.ports import HubStore
from hub.store.rows import RawWindowRow
from hub.training.base_sets import base_readings, base_set
from hub.training.dataset import (
    Datasets,
    EvalSet,
    Feedback,
    assemble_datasets,
    feedback_rows,
    propose_eval_split,
    split_keys,
)
from hub.training.errors import RetrainError, UnknownLabelSetError
from hub.training.far_floor import floor_from_decisions, healthy_cohorts, onset_from_reports
from hub.training.regimes import (
    FieldReadings,
    FieldRegimes,
    as_parent_scored,
    compare_regimes,
    field_readings,
    learn_regimes,
    restate_feedback,
)
from hub.training.settings import TrainingSettings
from hub.training.split import SplitPlan, adaptive_block, choose_method
from shared.features import REGIMES
from shared.manifest import ModelManifest, load_manifest
from shared.manifest import same_inputs as same_manifest_inputs

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
    regimes: FieldRegimes | None = None,
) -> Datasets:
    """The training set and the frozen evaluation slice for one label set and one parent model.

    With `regimes` (learned from the field, `learn_field_regimes`) the base set is featurised with them and every
    field row is restated from its trace's raw window before anything is split (`hub.training.regimes`): rows without
    one are dropped, so the slice, the k-fold rows (``data.labelled``) and the weights are all of the restated rows,
    and ``Datasets.as_scored`` keeps each one's features as the incumbent scored them."""
    window = parent.window
    # "sim" (the simulator) or "cmapss:<file>"
    spec, sim = base_set(parent, settings, window, None if regimes is None else regimes.stats)
    feedback, windows = feedback_as_parent(store, label_set_id, parent, settings,
                                           known_windows=None if regimes is None else regimes.raw_windows)
    as_scored = None
    if regimes is not None:
        feedback, restatement = restate_feedback(feedback, windows, window, regimes.stats)
        as_scored = restatement.as_scored
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
    return replace(data, split=plan, as_scored=as_scored)


def feedback_as_parent(
    store: HubStore, label_set_id: str, parent: ModelManifest, settings: TrainingSettings, *,
    known_windows: Mapping[str, RawWindowRow] | None = None,
) -> tuple[Feedback, dict[str, RawWindowRow]]:
    """The label set's feedback as `parent` would have scored it: rows another version scored under other inputs
    (other regime statistics) restated from their raw windows, or dropped (`as_parent_scored`); and the stored raw
    windows read for that. With `known_windows` (already read) every row's window is read, from those first, for a
    restatement after this one (`restate_feedback`)."""
    feedback = load_feedback(store, label_set_id, parent.window.n_features, settings.feedback_weight)
    same = same_inputs(store, parent, feedback.model_version)
    traces = feedback.rows.trace_id if known_windows is not None else feedback.rows.trace_id[~same]
    windows = stored_windows(store, traces.tolist(), known_windows or {}) if len(traces) else {}
    if not same.all():
        feedback = as_parent_scored(feedback, same, windows, parent)
    return feedback, windows


def same_inputs(store: HubStore, parent: ModelManifest, versions: np.ndarray) -> np.ndarray:
    """Whether the version that scored each row had `parent`'s inputs (`shared.manifest.same_inputs`: a version
    before or after regimes learned from the field has other statistics, and features of the same width). A version
    the registry does not hold, or none recorded, counts as the parent's, as before versions differed."""
    alike: dict[str, bool] = {}
    for version in set(versions.tolist()):
        row = store.model_version(version) if version else None
        alike[version] = row is None or same_manifest_inputs(load_manifest(row.manifest), parent)
    return np.array([alike[v] for v in versions.tolist()], dtype=bool)


def field_regime_windows(store: HubStore, parent: ModelManifest, settings: TrainingSettings, *,
                         since: float) -> tuple[list[RawWindowRow], FieldReadings]:
    """The raw windows received since `since` (at most ``settings.regimes_max_windows``, the newest) and their
    readings of `parent`'s window sensors: what ``regimes = "field"`` learns from and ``"auto"`` decides on, read once.
    RetrainError for a parent that is not of feature set 2."""
    window = parent.window
    if window.feature_set_version != REGIMES or parent.regimes is None:
        raise RetrainError(f"regimes from the field are feature set {REGIMES}'s; the parent {parent.version} uses "
                           f"feature set {window.feature_set_version}, which has no regime statistics: retrain with "
                           "the parent's regimes")
    rows = store.stored_raw_windows(since=since, limit=settings.regimes_max_windows)
    return rows, field_readings(rows, window.sensors)


def field_far_share(parent: ModelManifest, field: FieldReadings, settings: TrainingSettings) -> float | None:
    """The share of the field's readings far from every one of `parent`'s regimes
    (`hub.training.regimes.compare_regimes`): what ``regimes = "auto"`` decides on. None when the field has fewer
    than ``settings.regimes_min_readings`` readings."""
    if parent.regimes is None or field.readings < settings.regimes_min_readings:
        return None
    return compare_regimes(parent.version, parent.regimes, field, parent.window.sensors, None).far_share


def learn_field_regimes(parent: ModelManifest, settings: TrainingSettings, rows: list[RawWindowRow],
                        field: FieldReadings) -> FieldRegimes:
    """Regime statistics for a retrain from `parent` (of feature set 2, `field_regime_windows`), learned from the
    field's raw windows `rows` (their readings `field`) and the base set's readings. RetrainError for a base set
    that is not C-MAPSS, or too few field readings."""
    assert parent.regimes is not None  # field_regime_windows refused a parent without them
    window = parent.window
    base = base_readings(parent, settings, window)
    stats = learn_regimes(field, base, window.sensors, parent.regimes.settings,
                          min_readings=settings.regimes_min_readings, seed=settings.seed)
    return FieldRegimes(stats, devices=field.devices, windows=field.windows, readings=field.readings,
                        base_readings=sum(len(b) for b in base), raw_windows={r.trace_id: r for r in rows})


def stored_windows(store: HubStore, trace_ids: list[str], known: Mapping[str, RawWindowRow]) -> dict[str, RawWindowRow]:
    """The stored raw window of each trace that has one: from `known` (already read), else read from the store in
    one batch (`raw_windows_of`: one query a trace was slow on PostgreSQL for a retrain's label set)."""
    asked = store.raw_windows_of([t for t in trace_ids if t not in known])
    out: dict[str, RawWindowRow] = {}
    for trace in trace_ids:
        row = known.get(trace) or asked.get(trace)
        if row is not None and row.state == "stored":
            out[trace] = row
    return out


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


def frozen_slice(store: HubStore, label_set_id: str | None, parent: ModelManifest, settings: TrainingSettings, *,
                 now: float) -> tuple[EvalSet, SplitPlan]:
    """The frozen evaluation slice of a label set (new traces assigned as a retrain would), without a training
    set: what a model made elsewhere, with `parent`'s inputs, is gated on. Rows another version scored under other
    inputs are restated as `parent`'s from their raw windows or dropped, as a retrain does (`as_parent_scored`). No
    k-fold (it cannot be refitted); None: no label set yet."""
    empty = np.empty(0, str)
    n_features = parent.window.n_features
    if label_set_id is None:
        feedback = feedback_rows([], {}, n_features, settings.feedback_weight)
    else:
        feedback, _ = feedback_as_parent(store, label_set_id, parent, settings)
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
