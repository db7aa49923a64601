"""One retrain, start to verdict: data → fit → threshold → ONNX → parity → manifest → registry → gate.

The candidate is fitted (seeded) on the simulated base set plus validated field feedback, its threshold
chosen on a validation split of that data, converted to ONNX and held to parity with scikit-learn on the
frozen evaluation slice (a failure stops the job: nothing is registered). It is then written, signed and
registered as a ``candidate``, scored beside the incumbent on the same slice, and the gate's decision is
recorded with every number: a passing model stays ``candidate`` (eligible for rollout), a failing one
becomes ``rejected`` and is never deployed, one the slice cannot judge becomes ``insufficient_data`` (not
deployed either, but not found worse). How the gate's rows were chosen (`hub.training.split`) goes with it.
Same inputs and seed give the same ONNX bytes.

Feature set 2's regime statistics are the parent's, unless the job (or ``TrainingSettings.regimes``) says
``field``, or ``auto`` and the field's raw readings lie far from the parent's regimes: then they are learned from
the devices' raw windows and the base set, the field's rows are restated under them, the candidate's manifest
carries them, and the gate scores each model on its own features of the same rows (`hub.training.regimes`).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hub.gate.summary import gate_summary
from hub.labels.service import LabelSettings, validate_and_save
from hub.registry.service import Registry
from hub.store.ports import HubStore
from hub.store.rows import TrainingJobRow
from hub.training.crossval import out_of_fold_scores
from hub.training.dataset import Datasets
from hub.training.errors import RetrainError
from hub.training.evaluate import GateRun, gate_candidate, score
from hub.training.regimes import NO_RAW_WINDOW, FieldRegimes
from hub.training.service.loading import (
    build_datasets,
    far_before_drift,
    field_far_share,
    field_regime_windows,
    learn_field_regimes,
)
from hub.training.settings import ParamValue, TrainingSettings
from models.calibration import fit_calibration
from models.onnx_export import ParityReport, parity_check, to_onnx_bytes
from models.reference import reference_from_features
from models.training import (
    classification_metrics,
    cohort_metrics,
    model_params,
    positive_scores,
    select_threshold,
    train_classifier,
)
from models.version import build_manifest, read_version, write_version
from shared.manifest import ModelManifest

log = logging.getLogger(__name__)

CREATED_BY = "hub:retrain"
# A candidate's drift reference from the hub's random samples when too few of them are labelled: at most this many,
# from the shortest of these spans (then the label TTL) that holds them, reading at most REFERENCE_SCAN_ROWS samples.
REFERENCE_MAX_ROWS = 20_000
REFERENCE_SPANS_S = (3600.0, 86_400.0, 7 * 86_400.0)
REFERENCE_SCAN_ROWS = 200_000
Progress = Callable[[str, float], None]
"""Told each stage as it starts, with the job's progress in [0, 1]."""
LabelTransform = Callable[[np.ndarray], np.ndarray]
"""Applied to the training labels before fitting (tests sabotage a candidate with it); recorded."""

STAGES: tuple[tuple[str, float], ...] = (
    ("labels", 0.02), ("dataset", 0.05), ("train", 0.2), ("convert", 0.55), ("manifest", 0.65),
    ("register", 0.75), ("gate", 0.8), ("done", 1.0),
)
_PROGRESS = dict(STAGES)
VERDICT_STATUS = {"pass": "candidate", "fail": "rejected", "insufficient_data": "insufficient_data"}
"""The candidate's registry status after each gate verdict: only a pass can be rolled out; a slice too small to
judge is ``insufficient_data``, its own status, never ``rejected`` (which says the gate found it worse)."""
REGIMES_DETAIL = "regimes"
"""A job's details key naming where its regime statistics come from ("parent" or "field"; absent: the settings')."""
REGIME_SOURCES = ("parent", "field", "auto")


def _quiet(stage: str, progress: float) -> None:
    """The default progress callback: says nothing."""


@dataclass(frozen=True)
class RetrainResult:
    """What one retrain made and how the gate judged it."""

    version: str
    incumbent: str
    label_set_id: str
    passed: bool
    verdict: str
    reasons: tuple[str, ...]
    manifest: ModelManifest
    gate: dict[str, Any]
    counts: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)
    status: str = "candidate"  # the version's registry status after the gate (`VERDICT_STATUS`)

    def summary(self) -> dict[str, Any]:
        """JSON-safe: what the job row keeps (the full gate record is on the registry version); its
        ``gate_summary`` is the short form a person reads (`hub.gate.summary`)."""
        c, i = self.gate.get("candidate", {}), self.gate.get("incumbent", {})
        keys = ("recall", "false_alarm_rate", "precision", "f1", "n_pos", "n_neg")
        return {
            "version": self.version, "incumbent": self.incumbent, "label_set_id": self.label_set_id,
            "passed": self.passed, "verdict": self.verdict, "reasons": list(self.reasons), "status": self.status,
            "gate_summary": gate_summary(self.gate, status=self.status), "split": self.gate.get("split"),
            "candidate": {k: c.get(k) for k in keys}, "incumbent_metrics": {k: i.get(k) for k in keys},
            "latency_p99_ms": self.gate.get("latency_p99_ms"), "onnx_sha256": self.manifest.onnx_sha256,
            "counts": self.counts, "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }


class Retrainer:
    """Runs retrain jobs against one store and registry; `label_transform` is a test hook."""

    def __init__(
        self,
        store: HubStore,
        registry: Registry,
        settings: TrainingSettings,
        *,
        labels: LabelSettings,
        staging_dir: Path,
        clock: Callable[[], float] = time.time,
        label_transform: LabelTransform | None = None,
        actor: str = CREATED_BY,
    ) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.labels = labels
        self.staging_dir = staging_dir
        self.clock = clock
        self.label_transform = label_transform
        self.actor = actor

    def run(self, job: TrainingJobRow, progress: Progress = _quiet) -> RetrainResult:
        """Retrain for `job` and gate the candidate. Raises RetrainError or ModelError when it cannot."""
        timer = _Timer(progress)
        now = self.clock()
        s = self.settings

        timer.stage("labels")
        label_set_id = job.label_set_id or self._validate_labels(job, now)
        incumbent = self.registry.active_version()
        if incumbent is None:
            raise RetrainError("no active model to retrain from and gate against: register and activate one first")
        parent = self.registry.manifest(incumbent)
        assert parent is not None  # the registry just named it

        timer.stage("dataset")
        learned, far_share = None, None
        source = regimes_source(job, s)
        if source == "auto" and parent.regimes is None:
            source = "parent"  # feature set 1: no regime statistics to learn
        if source != "parent":
            since = now - (s.regimes_since_s if s.regimes_since_s is not None else self.labels.ttl_s)
            rows, field = field_regime_windows(self.store, parent, s, since=since)
            if source == "auto":
                far_share = field_far_share(parent, field, s)
                source = "field" if far_share is not None and far_share > s.regimes_far_share else "parent"
                log.info("retrain %s: regimes auto: %s of the field's readings far from the parent's regimes: %s",
                         job.id, "none" if far_share is None else f"{far_share:.1%}", source)
            if source == "field":
                learned = learn_field_regimes(parent, s, rows, field)
                log.info("retrain %s: %d regimes learned from %d field readings (%d raw windows, %d devices)",
                         job.id, learned.stats.n_regimes, learned.readings, learned.windows, learned.devices)
        data = build_datasets(self.store, label_set_id=label_set_id, parent=parent, settings=s,
                              max_cohort_share=self.labels.max_cohort_share, now=now, regimes=learned)
        ts, evaluation = data.training, data.evaluation
        X, y, w, val = ts.X, ts.y, ts.weight, ts.validation
        if self.label_transform is not None:
            y = np.asarray(self.label_transform(y.copy()), dtype=np.int64)
            if y.shape != ts.y.shape:
                raise RetrainError("label_transform must return one label per training row")
        fit = ~val
        log.info("retrain %s: %d training rows (%s), %d evaluation rows, label set %s", job.id, len(ts),
                 ", ".join(ts.descriptions), len(evaluation), label_set_id)

        timer.stage("train")
        estimator = train_classifier(X[fit], y[fit], seed=s.seed, sample_weight=w[fit], family=s.family,
                                     params=s.params)
        # On all validation rows, simulated and field: field rows alone (hundreds) give a noisy F1 optimum.
        threshold = select_threshold(y[val], positive_scores(estimator, X[val]))

        timer.stage("convert")
        onnx_bytes = to_onnx_bytes(estimator, parent.window.n_features)
        parity_rows = np.concatenate([evaluation.X, X[val]])
        parity = parity_check(estimator, onnx_bytes, parity_rows, threshold,
                              max_abs_diff=s.gate.max_parity_abs_diff, max_label_flips=s.gate.max_parity_flips)

        timer.stage("manifest")
        manifest = self._manifest(job, data, parent, incumbent, onnx_bytes, threshold, y, parity.as_dict(), now,
                                  learned, far_share)

        timer.stage("register")
        staged = self.staging_dir / f"{manifest.version}-{job.id}"
        try:
            write_version(staged, onnx_bytes, manifest)
            self.registry.register(staged, actor=self.actor, reason=job.reason, status="candidate",
                                   trigger_id=job.trigger_id)
        finally:
            shutil.rmtree(staged, ignore_errors=True)

        timer.stage("gate")
        try:
            gate = self._gate(data, manifest, onnx_bytes, incumbent, parity, label_set_id, y, fit)
        except Exception as exc:  # a registered candidate is never left un-gated
            self.registry.transition(manifest.version, "rejected", actor=self.actor, action="gate",
                                     reason=f"the gate could not run: {exc}", details={"job_id": job.id})
            raise
        d = gate.decision
        status = VERDICT_STATUS[d.verdict]
        reason = (f"gate passed against {incumbent}: recall {d.candidate.recall:.3f} vs {d.incumbent.recall:.3f}, "
                  f"false alarms {d.candidate.false_alarm_rate:.3f} vs {d.incumbent.false_alarm_rate:.3f}"
                  if d.passed else f"gate {d.verdict} against {incumbent}: " + "; ".join(d.reasons))
        if data.split is not None:
            reason += f" ({data.split.method}: {data.split.reason})"
        self.registry.transition(manifest.version, status, actor=self.actor, action="gate", reason=reason,
                                 gate=gate.record, details={"job_id": job.id, "trigger_id": job.trigger_id})
        timer.stage("done")
        log.info("retrain %s: %s %s (%s)", job.id, manifest.version, status, reason)
        return RetrainResult(
            version=manifest.version, incumbent=incumbent, label_set_id=label_set_id, passed=d.passed,
            verdict=d.verdict, reasons=d.reasons, manifest=manifest, gate=gate.record, counts=data.counts,
            timings=timer.timings, status=status,
        )

    def _validate_labels(self, job: TrainingJobRow, now: float) -> str:
        saved = validate_and_save(self.store, self.labels, now=now)
        self.store.update_training_job(job.id, label_set_id=saved.row.id)
        return saved.row.id

    def _manifest(
        self, job: TrainingJobRow, data: Datasets, parent: ModelManifest, incumbent: str, onnx_bytes: bytes,
        threshold: float, y: np.ndarray, parity: dict[str, float | int], now: float,
        learned: FieldRegimes | None = None, far_share: float | None = None,
    ) -> ModelManifest:
        s, ts, evaluation = self.settings, data.training, data.evaluation
        fit = ~ts.validation
        # Metrics of the artifact on the frozen slice (the validation split when the slice is empty).
        on: Literal["eval", "validation"]
        if len(evaluation):
            m_y, m_s, m_c, on = evaluation.y, score(onnx_bytes, evaluation.X), evaluation.cohort, "eval"
        else:
            m_y, m_s, on = y[ts.validation], score(onnx_bytes, ts.X[ts.validation]), "validation"
            m_c = np.concatenate([p.cohort for p in (ts.sim, ts.field)])[ts.validation]
        metrics = classification_metrics(m_y, m_s, threshold)
        metrics["parity_max_abs_diff"] = float(parity["max_abs_diff"])
        metrics["parity_label_flips"] = float(parity["label_flips"])
        # The drift reference is what devices should see: a random sample of field traffic when there is
        # enough of it (labelled or not: a reference needs no label), else the whole training set (the
        # simulator alone, on a first retrain).
        field_ref = ts.field.X[ts.field.unbiased]
        if len(field_ref) < s.reference_min_rows and learned is None:  # stored samples: under the parent's regimes
            field_ref = self._random_traffic(ts.X.shape[1], now)
        ref_X, ref_from = (field_ref, "field_random") if len(field_ref) >= s.reference_min_rows else (ts.X, "training")
        reference = reference_from_features(ref_X, score(onnx_bytes, ref_X))
        spec = data.sim_spec
        recorded: dict[str, ParamValue] = {
            "family": s.family, **model_params(s.family, s.params), "horizon": spec.horizon,
            "n_machines": spec.n_machines, "steps": spec.steps, "sim_seed": spec.seed,
            "feedback_weight": s.feedback_weight, "sim_weight": s.sim_weight, "balance_cohorts": str(s.balance_cohorts),
            "eval_fraction": s.eval_fraction, "validation_fraction": s.validation_fraction,
            "split_block_s": s.split_block_s, "split_method": None if data.split is None else data.split.method,
            "split_block_used_s": None if data.split is None else data.split.block.block_s,
            "n_fit": int(fit.sum()), "n_validation": int(ts.validation.sum()),
            "n_eval": len(evaluation), "n_sim": len(ts.sim), "n_field": len(ts.field), "metrics_on": on,
            "reference_from": ref_from, "label_transform": "none" if self.label_transform is None else "custom",
            "job_id": job.id,
        }
        if far_share is not None:  # 'auto' looked at the field: what it saw, whichever way it chose
            recorded["regimes_far_share"] = round(far_share, 4)
        if learned is not None:
            recorded.update({
                "regimes_from": "field", "regimes_field_devices": learned.devices,
                "regimes_field_windows": learned.windows, "regimes_field_readings": learned.readings,
                "regimes_base_readings": learned.base_readings, "n_regimes": learned.stats.n_regimes,
                "regimes_restated": len(ts.field) + len(evaluation),
                "regimes_dropped": data.counts.get(NO_RAW_WINDOW, 0),
            })
        return build_manifest(
            version=self.store.reserve_model_version(job.id),
            onnx_bytes=onnx_bytes, family=s.family, window=parent.window, threshold=threshold,
            reference=reference, X=ts.X[fit], y=y[fit], sample_weight=ts.weight[fit], seed=s.seed,
            data_kind=ts.data_kind, created_by=CREATED_BY, reason=job.reason, metrics=metrics,
            cohort_metrics=cohort_metrics(m_y, m_s, threshold, m_c), parent_version=incumbent,
            trigger_id=job.trigger_id, label_set_version=data.label_set_id, sources=ts.descriptions,
            params=recorded, created=datetime.fromtimestamp(now, UTC), weighting=data.weighting,
            # scores -> probabilities for label-free performance estimates (`hub.training.estimate`), fitted on the
            # rows the metrics are on: the frozen slice, never the rows the model was fitted on
            calibration=fit_calibration(m_y, m_s, on),
            # feature set 2: the field's features were computed with the parent's regime statistics, so the child
            # keeps them (the hub cannot re-normalise a feature vector; see shared.regimes), unless it learned new
            # ones from the field and restated the field's rows from their raw windows (hub.training.regimes)
            regimes=parent.regimes if learned is None else learned.stats,
        )

    def _random_traffic(self, n_features: int, now: float) -> np.ndarray:
        """Features of the random samples the hub holds (the devices' unbiased slice of their traffic), labelled or
        not, of this model's width: from the last hour, else day, week or label TTL, the first span holding
        `REFERENCE_MAX_ROWS` (at most that many)."""
        X: list[tuple[float, ...]] = []
        for span in (*REFERENCE_SPANS_S, self.labels.ttl_s):
            rows = self.store.predictions(now - min(span, self.labels.ttl_s), now, kind="sample",
                                          limit=REFERENCE_SCAN_ROWS)
            X = [p.features for p in rows if p.reason == "random" and len(p.features) == n_features]
            if len(X) >= REFERENCE_MAX_ROWS or span >= self.labels.ttl_s:
                break
        return np.array(X[:REFERENCE_MAX_ROWS], dtype=np.float32).reshape(-1, n_features)

    def _gate(self, data: Datasets, manifest: ModelManifest, onnx_bytes: bytes, incumbent: str,
              parity: ParityReport, label_set_id: str, y: np.ndarray, fit: np.ndarray) -> GateRun:
        """On the frozen slice, or (`hub.training.split`) by k-fold by device on every labelled row.

        With regimes learned from the field, both the slice and the k-fold's labelled rows are the restated ones
        (`build_datasets` restates before splitting, so the two stay consistent): the candidate (and each fold's
        model) is scored on them, the incumbent on the features it was scored with (``Datasets.as_scored``)."""
        inc_manifest, inc_bytes = read_version(self.registry.path(incumbent))  # verifies its sha256
        s, config = self.settings, self.settings.gate.config()
        floor = far_before_drift(self.store, incumbent, label_set_id, min_negatives=config.min_negatives,
                                 min_cohort_negatives=config.min_cohort_negatives)
        evaluation, scores = data.evaluation, None
        if data.split is not None and data.split.method == "device_kfold" and data.labelled is not None:
            evaluation = data.labelled
            scores = out_of_fold_scores(
                data, y, fit, folds=data.split.folds, score=positive_scores,  # type: ignore[arg-type]
                fit=lambda X, y_, w: train_classifier(X, y_, seed=s.seed, sample_weight=w, family=s.family,
                                                      params=s.params))
        return gate_candidate(
            evaluation, candidate_onnx=onnx_bytes, candidate_threshold=manifest.threshold,
            incumbent_onnx=inc_bytes, incumbent_threshold=inc_manifest.threshold, incumbent_version=incumbent,
            parity=parity, config=config, latency_runs=s.latency_runs, far_floor=floor, candidate_scores=scores,
            split=None if data.split is None else data.split.to_dict(),
            incumbent_X=None if data.as_scored is None else data.incumbent_X(evaluation),
        )


def regimes_source(job: TrainingJobRow, settings: TrainingSettings) -> str:
    """Where `job`'s regime statistics come from: its details' ``regimes`` (as requested), else the settings'."""
    source = job.details.get(REGIMES_DETAIL) or settings.regimes
    if source not in REGIME_SOURCES:
        raise RetrainError(f"regimes {source!r}: use one of {', '.join(REGIME_SOURCES)}")
    return str(source)


class _Timer:
    """Reports each stage to `progress` and times it."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}
        self._stage: str | None = None
        self._start = self._t0 = time.perf_counter()

    def stage(self, name: str) -> None:
        now = time.perf_counter()
        if self._stage is not None:
            self.timings[self._stage] = now - self._start
        if name == "done":
            self.timings["total"] = now - self._t0
        self._stage, self._start = name, now
        self.progress(name, _PROGRESS[name])
