"""What a retrain learns from and is judged on: the simulated base set, validated field feedback, and the
frozen evaluation slice of live labelled traffic.

- **Training set**: the parent's simulated fleet (``source="sim"``, replaying the simulator settings its
  manifest records) plus the label set's items joined to the features of their stored predictions
  (``source="field"``, weight = the label's weight × `TrainingSettings.feedback_weight`, decayed by age when
  ``field_half_life_s`` is set). The base rows are scaled down when they would hold more than
  ``1 - field_min_share`` of the weight (`hub.training.weighting`). The two sources stay in separate
  `SourceRows`; the combined arrays carry a ``source`` column.
- **Evaluation slice**: never hand-curated. A labelled trace belongs to it when a hash of its split key
  falls under `eval_fraction`; the key is the trace's device and time block (``split_block_s``) of its data
  time (the window's end as the readings stamp it, never a wall clock), so the overlapping windows of one
  device's same hour fall on one side and the same data gives the same slice. The assignment (eval or train) is stored
  the first time a trace is seen and never moves, even if the fraction changes later. Training and
  evaluation traces are disjoint, checked on every build.

Pure: this module works on values (label items, prediction rows, the stored assignments) and runs the
simulator; reading them from the store and storing the slice is `hub.training.service.loading`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from hub.store.rows import LabelItemRow, PredictionRow
from hub.training.errors import RetrainError
from hub.training.settings import TrainingSettings
from hub.training.split import SplitPlan
from hub.training.weighting import base_scale, recency_decay, weighting_record
from shared.features import WindowSpec
from shared.manifest import ModelManifest, SampleWeighting
from sim.dataset import simulate_windows, split_by_machine

Source = Literal["sim", "field"]
UNKNOWN_COHORT = "unknown"
EVAL_SALT = "fleetloop:eval-slice:v1"
"""Salts the hash that puts a split key in the evaluation slice (changing it would move every new trace)."""


# --- pure helpers -----------------------------------------------------------------------------------


def hash_fraction(key: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed by `key` and `salt` (the first 8 bytes of a sha256).

    >>> hash_fraction("dev-1:0", "x") == hash_fraction("dev-1:0", "x")
    True
    >>> 0.0 <= hash_fraction("dev-1:0", "x") < 1.0
    True
    """
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_key(device_id: str, ts: float, trace_id: str, block_s: float) -> str:
    """The unit a trace is split with: its device and time block, or the trace itself when `block_s` is 0.

    >>> split_key("pump-1", 7_250.0, "t1", 3600.0), split_key("pump-1", 7_250.0, "t1", 0.0)
    ('pump-1@2', 't1')
    """
    if block_s <= 0:
        return trace_id
    return f"{device_id}@{math.floor(ts / block_s)}"


def balance_cohort_weights(weights: np.ndarray, cohorts: np.ndarray, max_share: float) -> np.ndarray:
    """Scale down the weights of every cohort holding more than `max_share` of the total weight, so none does.

    Water-filling: capped cohorts end with exactly `max_share` of the new total, the others keep their
    weights (never scaled up: that would amplify a small cohort's noise). With fewer cohorts than
    ``1 / max_share`` the limit is unreachable and ``1 / n_cohorts`` (equal shares) is used instead.

    >>> w = balance_cohort_weights(np.ones(4), np.array(["a", "a", "a", "b"]), 0.5)
    >>> [round(v, 4) for v in w.tolist()]
    [0.3333, 0.3333, 0.3333, 1.0]
    >>> balance_cohort_weights(np.array([5.0, 4.0, 1.0]), np.array(["a", "b", "c"]), 0.5).tolist()
    [5.0, 4.0, 1.0]
    """
    w = np.asarray(weights, dtype=np.float64).copy()
    c = np.asarray(cohorts)
    names = sorted(set(c.tolist()))
    if len(names) < 2:
        return w
    totals = {n: float(w[c == n].sum()) for n in names}
    limit = max(max_share, 1.0 / len(names))
    capped: set[str] = set()
    total = math.fsum(totals.values())
    while True:
        over = {n for n in names if n not in capped and totals[n] > limit * total * (1 + 1e-12)}
        if not over:
            break
        capped |= over
        # each capped cohort holds `limit` of the new total: total = free + |capped| * limit * total
        total = math.fsum(totals[n] for n in names if n not in capped) / (1.0 - limit * len(capped))
    for n in capped:
        w[c == n] *= limit * total / totals[n]
    return w


# --- rows ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceRows:
    """Rows of one source. `group` is the unit of splitting (a machine, or a device's time block);
    `validation` marks the rows that choose the threshold; `unbiased` the rows of a random traffic sample."""

    source: Source
    X: np.ndarray  # float32 (n, features)
    y: np.ndarray  # int64 (n,)
    weight: np.ndarray  # float64 (n,)
    cohort: np.ndarray  # str (n,)
    group: np.ndarray  # str (n,)
    trace_id: np.ndarray  # str (n,), "" for simulated rows
    validation: np.ndarray  # bool (n,)
    unbiased: np.ndarray  # bool (n,)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, mask: np.ndarray, **changes: np.ndarray) -> SourceRows:
        """The rows `mask` keeps, with `changes` (already of the kept rows) replacing columns."""
        return _take(self, mask, **changes)

    @classmethod
    def empty(cls, source: Source, n_features: int) -> SourceRows:
        return cls(source, np.empty((0, n_features), np.float32), np.empty(0, np.int64), np.empty(0),
                   np.empty(0, str), np.empty(0, str), np.empty(0, str), np.empty(0, bool), np.empty(0, bool))


@dataclass(frozen=True)
class TrainingSet:
    """The simulated and the field rows, apart; `X`, `y`, … are their concatenation (sim first)."""

    sim: SourceRows
    field: SourceRows
    descriptions: tuple[str, ...]  # one per non-empty source, with its counts: the manifest's `sources`

    @property
    def parts(self) -> tuple[SourceRows, ...]:
        return tuple(p for p in (self.sim, self.field) if len(p))

    def _cat(self, name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in (self.sim, self.field)])

    @property
    def X(self) -> np.ndarray:
        return np.ascontiguousarray(self._cat("X"), dtype=np.float32)

    @property
    def y(self) -> np.ndarray:
        return self._cat("y").astype(np.int64)

    @property
    def weight(self) -> np.ndarray:
        return self._cat("weight").astype(np.float64)

    @property
    def source(self) -> np.ndarray:
        return np.concatenate([np.full(len(p), p.source) for p in (self.sim, self.field)])

    @property
    def validation(self) -> np.ndarray:
        return self._cat("validation").astype(bool)

    @property
    def data_kind(self) -> Literal["simulated", "real", "mixed"]:
        kinds = {p.source for p in self.parts}
        return "mixed" if len(kinds) == 2 else "real" if kinds == {"field"} else "simulated"

    def __len__(self) -> int:
        return len(self.sim) + len(self.field)


@dataclass(frozen=True)
class EvalSet:
    """The frozen evaluation slice as scored: one row per labelled trace, with its cohort and its group,
    the split key (a device's time block) that the gate's block bootstrap resamples as one unit."""

    X: np.ndarray
    y: np.ndarray
    cohort: np.ndarray
    trace_id: np.ndarray
    device_id: np.ndarray
    groups: np.ndarray  # str (n,)

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class SimSpec:
    """The simulator settings of the base set."""

    n_machines: int
    steps: int
    horizon: int
    seed: int

    def describe(self) -> str:
        return f"sim:n_machines={self.n_machines},steps={self.steps},horizon={self.horizon},seed={self.seed}"


@dataclass(frozen=True)
class Datasets:
    training: TrainingSet
    evaluation: EvalSet
    sim_spec: SimSpec
    label_set_id: str
    counts: dict[str, int] = field(default_factory=dict)  # what was dropped or held out, for the record
    labelled: EvalSet | None = None  # every field row (training and slice), for k-fold cross-evaluation
    field_device_id: np.ndarray = field(default_factory=lambda: np.empty(0, str))  # of `training.field` rows
    split: SplitPlan | None = None  # how the gate judges it (`hub.training.split`)
    weighting: SampleWeighting | None = None  # base set against field (`hub.training.weighting`), for the manifest
    # regimes learned from the field (`hub.training.regimes`): the field rows' X are restated; these are their
    # features as the incumbent scored them, by trace id. None: the rows are as scored.
    as_scored: Mapping[str, np.ndarray] | None = None

    def incumbent_X(self, rows: EvalSet) -> np.ndarray:
        """The incumbent's inputs for `rows` (of this dataset's field rows): their features as it scored them."""
        if self.as_scored is None:
            return rows.X
        return np.array([self.as_scored[str(t)] for t in rows.trace_id], dtype=np.float32).reshape(rows.X.shape)


def sim_spec(parent: ModelManifest, settings: TrainingSettings) -> SimSpec:
    """Settings override the parent's recorded simulator settings, which override the initial recipe's."""
    from models.initial import DEFAULT_HORIZON, DEFAULT_N_MACHINES, DEFAULT_STEPS

    p = parent.training.params

    def pick(override: int | None, key: str, default: int) -> int:
        if override is not None:
            return override
        value = p.get(key)
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default

    return SimSpec(
        n_machines=pick(settings.sim_n_machines, "n_machines", DEFAULT_N_MACHINES),
        steps=pick(settings.sim_steps, "steps", DEFAULT_STEPS),
        horizon=pick(settings.sim_horizon, "horizon", DEFAULT_HORIZON),
        seed=pick(settings.sim_seed, "sim_seed", parent.training.seed),
    )


def base_rows(spec: SimSpec, window: WindowSpec, *, weight: float, validation_fraction: float,
              seed: int) -> SourceRows:
    """The simulated base set, split by machine (each cohort in proportion) into fit and validation."""
    if weight <= 0:
        return SourceRows.empty("sim", window.n_features)
    ds = simulate_windows(spec.n_machines, spec.steps, spec.seed, window, spec.horizon)
    try:
        _, val = split_by_machine(ds, (1.0 - validation_fraction, validation_fraction), seed=seed)
    except ValueError as exc:
        raise RetrainError(f"the simulated base set ({spec.describe()}) cannot be split for validation: {exc}") \
            from None
    n = len(ds)
    return SourceRows(
        source="sim", X=ds.X, y=ds.y, weight=np.full(n, weight), cohort=ds.cohort, group=ds.machine_id,
        trace_id=np.full(n, ""), validation=np.isin(ds.machine_id, val.machines), unbiased=np.ones(n, bool),
    )


@dataclass(frozen=True)
class Feedback:
    """The usable labels of one label set as field rows (`validation` not set yet), with each row's device
    and data time (its split key's parts) and how many labels were dropped, and why.

    `ts` is the window's end as the device's readings stamp it (data time), not when the agent scored it or the
    hub received it: a replay, a backlog or a loaded machine changes those, and the slice must not move with them
    (the same data and seed give the same slice)."""

    rows: SourceRows
    device_id: np.ndarray
    ts: np.ndarray  # data time: each row's window_end
    dropped: dict[str, int]
    window_s: np.ndarray = field(default_factory=lambda: np.empty(0))  # each row's window length (s)
    model_version: np.ndarray = field(default_factory=lambda: np.empty(0, str))  # the version that scored each row

    def take(self, keep: np.ndarray, X: np.ndarray | None = None, **dropped: int) -> Feedback:
        """The rows `keep` keeps (with features `X` of the kept rows, if given), `dropped` added to the counts."""
        n = len(self.rows)
        return Feedback(self.rows.take(keep) if X is None else self.rows.take(keep, X=X), self.device_id[keep],
                        self.ts[keep], {**self.dropped, **dropped},
                        self.window_s[keep] if len(self.window_s) == n else self.window_s,
                        self.model_version[keep] if len(self.model_version) == n else self.model_version)


def feedback_rows(items: Sequence[LabelItemRow], predictions: Mapping[str, PredictionRow], n_features: int,
                  feedback_weight: float) -> Feedback:
    """The label set's `items` joined to the features of their `predictions` (by trace id); labels without a
    prediction, or whose features are not this model's inputs, are dropped and counted.

    Rows come in data order (device, unit, window end; trace id last), not in trace-id order: a trace id is the
    agent's clock when it scored (UUIDv7), so the same windows scored by gateways running side by side would come in
    another order each run, and a fit or a bootstrap that sees its rows in another order is another fit."""
    kept, missing, wrong_width = [], 0, 0
    for item in items:
        p = predictions.get(item.trace_id)
        if p is None:
            missing += 1
        elif len(p.features) != n_features:
            wrong_width += 1  # an older feature set: not this model's inputs
        else:
            kept.append((item, p))
    kept.sort(key=lambda ip: (ip[1].device_id, ip[1].unit or "", ip[1].window_end, ip[0].trace_id))
    n = len(kept)
    rows = SourceRows(
        source="field",
        X=np.array([p.features for _, p in kept], dtype=np.float32).reshape(n, n_features),
        y=np.array([i.label for i, _ in kept], dtype=np.int64),
        weight=np.array([i.weight * feedback_weight for i, _ in kept], dtype=np.float64),
        cohort=np.array([i.cohort or UNKNOWN_COHORT for i, _ in kept], dtype=str),
        group=np.empty(n, str),
        trace_id=np.array([i.trace_id for i, _ in kept], dtype=str),
        validation=np.zeros(n, bool),
        unbiased=np.array([p.reason == "random" for _, p in kept], dtype=bool),  # sampled anomalies too
    )
    return Feedback(rows, np.array([p.device_id for _, p in kept], dtype=str),
                    np.array([p.window_end for _, p in kept], dtype=np.float64),
                    {"field_missing_prediction": missing, "field_wrong_feature_count": wrong_width},
                    np.array([p.window_end - p.window_start for _, p in kept], dtype=np.float64),
                    np.array([p.model_version or "" for _, p in kept], dtype=str))


def _take(rows: SourceRows, mask: np.ndarray, **changes: np.ndarray) -> SourceRows:
    values = {name: getattr(rows, name)[mask] for name in
              ("X", "y", "weight", "cohort", "group", "trace_id", "validation", "unbiased")}
    return SourceRows(rows.source, **{**values, **changes})


def split_keys(feedback: Feedback, block_s: float) -> np.ndarray:
    """Each feedback row's split key (`split_key`): the unit the evaluation slice and validation are drawn in."""
    return np.array([split_key(d, float(t), tr, block_s)
                     for d, t, tr in zip(feedback.device_id, feedback.ts, feedback.rows.trace_id, strict=True)],
                    dtype=str)


def propose_eval_split(trace_ids: np.ndarray, keys: np.ndarray, fraction: float) -> dict[str, bool]:
    """Which traces the hash puts in the evaluation slice (stored assignments, read back, win over these).

    >>> propose_eval_split(np.array(["t1", "t2"]), np.array(["k", "k"]), 1.0)
    {'t1': True, 't2': True}
    """
    return {str(t): hash_fraction(str(k), EVAL_SALT) < fraction for t, k in zip(trace_ids, keys, strict=True)}


def assemble_datasets(
    spec: SimSpec,
    sim: SourceRows,
    feedback: Feedback,
    keys: np.ndarray,
    in_eval: np.ndarray,
    *,
    label_set_id: str,
    settings: TrainingSettings,
    max_cohort_share: float,
) -> Datasets:
    """The training set and the evaluation slice from the base rows and the feedback, given each feedback
    row's split key and whether (as stored) it is in the evaluation slice. RetrainError on a leak."""
    rows = feedback.rows
    evaluation = EvalSet(X=rows.X[in_eval], y=rows.y[in_eval], cohort=rows.cohort[in_eval],
                         trace_id=rows.trace_id[in_eval], device_id=feedback.device_id[in_eval], groups=keys[in_eval])

    train = ~in_eval
    validation = np.array([hash_fraction(str(k), f"fleetloop:validation:{settings.seed}") < settings.validation_fraction
                           for k in keys[train]], dtype=bool)
    weight = rows.weight[train] * recency_decay(feedback.ts[train], settings.field_half_life_s)
    if settings.balance_cohorts:
        weight = balance_cohort_weights(weight, rows.cohort[train], max_cohort_share)
    field_rows = _take(rows, train, group=keys[train], validation=validation, weight=weight)
    scale = base_scale(float(sim.weight.sum()), float(weight.sum()), settings.field_min_share)
    if scale < 1.0:
        sim = replace(sim, weight=sim.weight * scale)
    weighting = weighting_record(base_weight=sim.weight, field_weight=weight, base_row_weight=settings.sim_weight,
                                 field_row_weight=settings.feedback_weight, min_share=settings.field_min_share,
                                 half_life_s=settings.field_half_life_s, scale=scale)

    overlap = set(field_rows.trace_id.tolist()) & set(evaluation.trace_id.tolist())
    if overlap:  # cannot happen by construction; a leak here would make every gate meaningless
        raise RetrainError(f"{len(overlap)} trace(s) are in both the training set and the evaluation slice")

    descriptions = []
    if len(sim):
        descriptions.append(f"{spec.describe()} rows={len(sim)} positives={int(sim.y.sum())}")
    if len(field_rows):
        descriptions.append(f"field:label_set={label_set_id} rows={len(field_rows)} "
                            f"positives={int(field_rows.y.sum())} eval_rows={len(evaluation)}")
    counts = {**feedback.dropped, "field_labels": len(rows), "field_train": len(field_rows), "eval": len(evaluation),
              "sim": len(sim)}
    labelled = EvalSet(X=rows.X, y=rows.y, cohort=rows.cohort, trace_id=rows.trace_id, device_id=feedback.device_id,
                       groups=keys)
    return Datasets(TrainingSet(sim, field_rows, tuple(descriptions)), evaluation, spec, label_set_id, counts,
                    labelled=labelled, field_device_id=feedback.device_id[train], weighting=weighting)


def cohort_counts(cohorts: np.ndarray, y: np.ndarray) -> Mapping[str, dict[str, int]]:
    """Rows and positives per cohort, sorted: what the gate's per-cohort checks had to work with."""
    return {str(c): {"n": int(np.sum(cohorts == c)), "n_positive": int(np.sum(y[cohorts == c]))}
            for c in sorted(set(cohorts.tolist()))}
