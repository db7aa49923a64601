"""Hub → device model assignment: prepare in the background, swap and check in the loop.

A worker thread fetches, verifies (sha256 against the assignment and the manifest, the Ed25519 signature),
installs and loads (warm-up) a candidate while the incumbent keeps serving; `ModelManager`, in the loop
thread, swaps it in between two windows, health-checks it over the next windows and rolls back by itself
when it fails; or, in shadow mode, scores it beside the incumbent and reports the disagreement. Pointers
in SQLite move only after a version is installed, verified and loaded, so a kill -9 anywhere leaves the
device serving a verified model; a pending health check is persisted and resumed after a restart.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from agent.models.fetch import ArtifactFetcher
from agent.models.onnx import OnnxModel
from agent.models.store import ModelStore
from infra.versions import ManifestVerifier
from shared.errors import FleetloopError, ModelError, ModelIntegrityError, ModelLoadError
from shared.manifest import MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE, ModelManifest, sha256_bytes
from shared.messages import Assign

log = logging.getLogger(__name__)

ModelEventKind = Literal["loaded", "refused", "swapped", "rolled_back", "health_ok", "health_failed", "shadow_report"]
Verdict = Literal["pending", "ok", "failed"]

HEALTH_PENDING = "model.health_pending"  # version under health check (survives a restart)
HEALTH_PREVIOUS = "model.health_previous"  # what `previous` should be again after rolling back
REFUSED = "model.refused"  # JSON {version: {"sha256": …, "reason": …}}: never served again
MAX_REFUSALS = 64
MAX_RETRY_S = 3600.0


# -- health check (pure) -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HealthCriteria:
    windows: int = 20
    latency_ms: float = 100.0  # p95 of per-window scoring latency


@dataclass
class HealthEvidence:
    windows: int = 0
    errors: int = 0
    nan_scores: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, *, error: bool, finite: bool, latency_s: float) -> None:
        self.windows += 1
        self.errors += error
        self.nan_scores += not error and not finite
        self.latencies_ms.append(latency_s * 1000.0)

    def metrics(self) -> dict[str, float]:
        lat = np.asarray(self.latencies_ms or [0.0])
        return {"windows": float(self.windows), "inference_errors": float(self.errors),
                "nan_scores": float(self.nan_scores), "latency_p50_ms": float(np.percentile(lat, 50)),
                "latency_p95_ms": float(np.percentile(lat, 95)), "latency_max_ms": float(lat.max())}


def health_verdict(evidence: HealthEvidence, criteria: HealthCriteria) -> tuple[Verdict, str]:
    """Fail at the first inference error or NaN score; after `criteria.windows` windows judge latency."""
    if evidence.errors:
        return "failed", f"{evidence.errors} inference error(s) in {evidence.windows} windows"
    if evidence.nan_scores:
        return "failed", f"{evidence.nan_scores} NaN/inf score(s) in {evidence.windows} windows"
    if evidence.windows < criteria.windows:
        return "pending", f"{evidence.windows}/{criteria.windows} windows"
    p95 = float(np.percentile(np.asarray(evidence.latencies_ms), 95))
    if p95 > criteria.latency_ms:
        return "failed", f"p95 latency {p95:.1f} ms exceeds the {criteria.latency_ms:.1f} ms budget"
    return "ok", f"{evidence.windows} windows, no errors or NaNs, p95 latency {p95:.2f} ms"


@dataclass
class ShadowStats:
    """The candidate beside the incumbent over one reporting period."""

    windows: int = 0
    compared: int = 0
    disagreements: int = 0
    abs_diff_sum: float = 0.0
    nan_scores: int = 0
    errors: int = 0
    incumbent_anomalies: int = 0
    shadow_anomalies: int = 0
    latency_sum_ms: float = 0.0
    latency_max_ms: float = 0.0

    def metrics(self) -> dict[str, float]:
        n, c = max(self.windows, 1), max(self.compared, 1)
        return {
            "windows": float(self.windows), "compared": float(self.compared),
            "disagreements": float(self.disagreements), "disagreement_rate": self.disagreements / c,
            "mean_abs_score_diff": self.abs_diff_sum / c, "nan_scores": float(self.nan_scores),
            "inference_errors": float(self.errors), "incumbent_anomaly_rate": self.incumbent_anomalies / c,
            "shadow_anomaly_rate": self.shadow_anomalies / c, "latency_mean_ms": self.latency_sum_ms / n,
            "latency_max_ms": self.latency_max_ms,
        }


# -- background preparation ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """Prepare a model: for an assignment (fetch, verify, install, load) or an installed version (load)."""

    version: str
    assign: Assign | None = None


@dataclass(frozen=True)
class Ready:
    job: Job
    model: OnnxModel


@dataclass(frozen=True)
class Failed:
    job: Job
    reason: str
    retry: bool  # worth trying again later (the fetch failed); otherwise the version is refused for good


def check_artifact(version_dir: Path, assign: Assign, verifier: ManifestVerifier | None) -> None:
    """The fetched version is the one assigned: version, sha256 in the assignment, manifest and file agree.

    The assignment's signature is verified over the manifest (when a key is pinned) and, if the artifact
    has no ``manifest.sig``, written there so the store keeps it; the store then verifies ``manifest.sig``.
    """
    try:
        manifest_bytes = (version_dir / MANIFEST_FILE).read_bytes()
        onnx_bytes = (version_dir / MODEL_FILE).read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"the artifact is incomplete: {exc}") from None
    try:
        manifest = ModelManifest.model_validate_json(manifest_bytes)
    except ValueError as exc:
        raise ModelLoadError(f"the artifact's manifest is invalid: {exc}") from None
    if manifest.version != assign.version:
        raise ModelIntegrityError(f"assigned {assign.version} but the artifact's manifest is {manifest.version}")
    if manifest.onnx_sha256 != assign.sha256:
        raise ModelIntegrityError(f"sha256 mismatch: the assignment says {assign.sha256}, "
                                  f"the manifest says {manifest.onnx_sha256}")
    actual = sha256_bytes(onnx_bytes)
    if actual != assign.sha256:
        raise ModelIntegrityError(f"sha256 mismatch: {MODEL_FILE} is {actual}, the assignment says {assign.sha256}")
    if assign.signature.strip():
        if verifier is not None:
            verifier.verify(manifest_bytes, assign.signature.encode())
        signature_path = version_dir / SIGNATURE_FILE
        if not signature_path.exists():
            signature_path.write_text(assign.signature.strip() + "\n")


class Preparer:
    """A worker thread that turns jobs into loaded models (or reasons) without stalling the window loop."""

    def __init__(self, store: ModelStore, fetcher: ArtifactFetcher) -> None:
        self.store = store
        self.fetcher = fetcher
        self.results: queue.SimpleQueue[Ready | Failed] = queue.SimpleQueue()
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, job: Job) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="model-preparer", daemon=True)
            self._thread.start()
        self._jobs.put(job)

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the worker to stop; a download in progress is abandoned (its staging dir is cleaned at start)."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            self.results.put(self.prepare(job))

    def prepare(self, job: Job) -> Ready | Failed:
        stage = "load"
        try:
            if job.assign is not None:
                staging = self.store.staging_dir()
                try:
                    stage = "fetch"
                    version_dir = self.fetcher.fetch(job.assign.url, staging)
                    stage = "verify"
                    check_artifact(version_dir, job.assign, self.store.verifier)
                    self.store.install(version_dir)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
                stage = "load"
            return Ready(job, self.store.load(job.version))
        except FleetloopError as exc:
            transient = stage == "fetch" and not isinstance(exc, ModelIntegrityError)
            return Failed(job, f"{stage}: {exc}", retry=transient)
        except Exception as exc:  # disk full, onnxruntime surprises: report, never kill the worker
            log.exception("preparing model %s failed", job.version)
            return Failed(job, f"{stage}: {type(exc).__name__}: {exc}", retry=stage == "fetch")


# -- the loop side -------------------------------------------------------------------------------------------
class ModelHost(Protocol):
    """What the manager needs from the agent loop."""

    model: OnnxModel

    def switch_model(self, model: OnnxModel) -> None:
        """Flush stats for the serving model, then serve `model` from the next window on."""

    def model_event(self, event: ModelEventKind, version: str, detail: str | None,
                    metrics: dict[str, float] | None = None) -> None: ...


def _key(assign: Assign) -> tuple[str, str, str]:
    return assign.version, assign.sha256, assign.mode


class ModelManager:
    """Assignments, swaps, health checks, shadow scoring and rollbacks. Runs in the loop thread only."""

    def __init__(self, host: ModelHost, store: ModelStore, preparer: Preparer, *, criteria: HealthCriteria,
                 shadow_report_s: float, retry_s: float) -> None:
        self.host = host
        self.store = store
        self.preparer = preparer
        self.criteria = criteria
        self.shadow_report_s = shadow_report_s
        self.retry_s = retry_s
        self.health: HealthEvidence | None = None
        self.fallback: OnnxModel | None = None
        self.shadow: OnnxModel | None = None
        self.shadow_stats = ShadowStats()
        self._shadow_due = 0.0
        self._desired: Assign | None = None
        self._inflight: set[tuple[str, str, str]] = set()
        self._retry_at: float | None = None
        self._retry_delay = retry_s
        self._answered: set[str] = set()  # msg ids of refused assignments already reported
        self._resume_health_check()

    # -- persistent state ------------------------------------------------------------------------------------
    def refusals(self) -> dict[str, dict[str, str]]:
        raw = self.store.db.get_state(REFUSED)
        try:
            return dict(json.loads(raw)) if raw else {}
        except ValueError:
            return {}

    def _refuse(self, version: str, sha256: str, reason: str) -> None:
        refused = self.refusals()
        refused.pop(version, None)
        refused[version] = {"sha256": sha256, "reason": reason[:500]}
        while len(refused) > MAX_REFUSALS:
            refused.pop(next(iter(refused)))
        self.store.db.set_state({REFUSED: json.dumps(refused)})

    def _resume_health_check(self) -> None:
        pending = self.store.db.get_state(HEALTH_PENDING)
        if pending is None:
            return
        if pending != self.host.model.version:  # the store fell back at start: nothing left to check
            self.store.db.set_state({HEALTH_PENDING: None, HEALTH_PREVIOUS: None})
            return
        log.info("resuming the health check of model %s after a restart", pending)
        self.health = HealthEvidence()
        previous = self.store.previous_version
        if previous is not None:
            try:
                self.fallback = self.store.load(previous)
            except ModelError as exc:
                log.error("cannot load previous model %s to fall back on: %s", previous, exc)

    # -- inbound ---------------------------------------------------------------------------------------------
    def on_assign(self, assign: Assign, now: float) -> None:
        """A (retained) assignment: act only on what changes what this device serves or shadows."""
        serving = self.host.model
        if assign.mode == "active" and assign.version == serving.version:  # e.g. redelivered on reconnect
            self._end_shadow(now)
            self._desired = None
            if assign.sha256 != serving.manifest.onnx_sha256:
                self._refused_once(assign, f"already serving {serving.version} with sha256 "
                                           f"{serving.manifest.onnx_sha256}")
            return
        refused = self.refusals().get(assign.version)
        if refused is not None and refused["sha256"] == assign.sha256:
            self._refused_once(assign, f"refused earlier, not retried: {refused['reason']}")
            return
        if assign.mode == "active":
            self._end_shadow(now)
        else:
            if assign.version == serving.version:
                self._end_shadow(now)
                self._desired = None
                log.info("shadow assignment of the serving model %s: nothing to compare", assign.version)
                return
            if self.shadow is not None and self.shadow.version == assign.version:
                return
        if self._desired is not None and _key(self._desired) == _key(assign) and (
            _key(assign) in self._inflight or self._retry_at is not None
        ):
            return
        log.info("assignment: %s %s from %s", assign.mode, assign.version, assign.url)
        self._desired = assign
        self._retry_at = None
        self._retry_delay = self.retry_s
        self._submit(assign)

    def on_rollback_command(self, now: float) -> None:
        """The hub's ``cmd rollback``: back to the previous version (and never back to this one by itself)."""
        if self.fallback is not None:
            self._roll_back(self.fallback, "rolled back by the hub")
            return
        previous = self.store.previous_version
        if previous is None:
            log.warning("the hub asked for a rollback but there is no previous model version")
            return
        self.preparer.submit(Job(previous))

    def _submit(self, assign: Assign) -> None:
        self._inflight.add(_key(assign))
        self.preparer.submit(Job(assign.version, assign))

    def _refused_once(self, assign: Assign, reason: str) -> None:
        if assign.msg_id not in self._answered:
            self._answered.add(assign.msg_id)
            log.warning("assignment of %s refused: %s", assign.version, reason)
            self.host.model_event("refused", assign.version, reason[:2000])

    # -- the loop calls these --------------------------------------------------------------------------------
    def poll(self, now: float) -> None:
        """Take prepared models from the worker; retry a failed fetch; report the shadow stage."""
        while not self.preparer.results.empty():
            result = self.preparer.results.get_nowait()
            if result.job.assign is not None:
                self._inflight.discard(_key(result.job.assign))
            if isinstance(result, Ready):
                self._ready(result, now)
            else:
                self._failed(result, now)
        if self._retry_at is not None and now >= self._retry_at and self._desired is not None:
            self._retry_at = None
            self._submit(self._desired)
        if self.shadow is not None and now >= self._shadow_due:
            self._report_shadow(now)

    def after_window(self, *, error: bool, finite: bool, latency_s: float) -> None:
        """Evidence from one window of the serving model during its health check."""
        if self.health is None:
            return
        self.health.add(error=error, finite=finite, latency_s=latency_s)
        verdict, reason = health_verdict(self.health, self.criteria)
        if verdict == "pending":
            return
        version, metrics = self.host.model.version, self.health.metrics()
        if verdict == "ok":
            log.info("model %s passed its health check: %s", version, reason)
            self.health, self.fallback = None, None
            self.store.db.set_state({HEALTH_PENDING: None, HEALTH_PREVIOUS: None})
            self.host.model_event("health_ok", version, reason, metrics)
            return
        log.error("model %s failed its health check: %s", version, reason)
        self.host.model_event("health_failed", version, reason, metrics)
        target = self.fallback
        if target is None:
            previous = self.store.previous_version
            try:
                target = self.store.load(previous) if previous else None
            except ModelError as exc:
                log.error("cannot load previous model %s: %s", previous, exc)
        if target is None:
            log.error("no previous model to roll back to; %s keeps serving", version)
            self.health = None
            self.store.db.set_state({HEALTH_PENDING: None, HEALTH_PREVIOUS: None})
            return
        self._roll_back(target, f"health check failed: {reason}")

    def score_shadow(self, features: np.ndarray, score: float, anomaly: bool) -> tuple[str, float | None]:
        """Score one window with the shadow candidate; (its version, its score or None)."""
        shadow = self.shadow
        assert shadow is not None
        stats = self.shadow_stats
        stats.windows += 1
        started = time.perf_counter()
        try:
            value = float(shadow.score(features.reshape(1, -1))[0])
        except Exception as exc:  # onnxruntime errors are untyped; the candidate never affects serving
            stats.errors += 1
            if stats.errors <= 3:
                log.warning("shadow model %s failed on a window: %s", shadow.version, exc)
            return shadow.version, None
        elapsed = (time.perf_counter() - started) * 1000.0
        stats.latency_sum_ms += elapsed
        stats.latency_max_ms = max(stats.latency_max_ms, elapsed)
        if not math.isfinite(value):
            stats.nan_scores += 1
            return shadow.version, None
        if math.isfinite(score):
            shadow_anomaly = value >= shadow.threshold
            stats.compared += 1
            stats.disagreements += shadow_anomaly != anomaly
            stats.abs_diff_sum += abs(value - score)
            stats.incumbent_anomalies += anomaly
            stats.shadow_anomalies += shadow_anomaly
        return shadow.version, value

    def stop(self) -> None:
        if self.shadow is not None:
            self._report_shadow(time.time())
        self.preparer.stop()

    # -- transitions -----------------------------------------------------------------------------------------
    def _ready(self, result: Ready, now: float) -> None:
        job, model = result.job, result.model
        if job.assign is None:  # a rollback the hub asked for, prepared by the worker
            if model.version == self.store.previous_version:
                self._roll_back(model, "rolled back by the hub")
            return
        if self._desired is None or _key(self._desired) != _key(job.assign):
            log.info("model %s is ready but no longer assigned; dropped", model.version)
            return
        self._desired = None
        self._retry_delay = self.retry_s
        if job.assign.mode == "shadow":
            self._start_shadow(model, job.assign, now)
            return
        if model.version == self.host.model.version:  # e.g. the incumbent re-assigned after a rollback
            log.info("model %s is assigned and already serving", model.version)
            return
        try:
            self._swap(model)
        except FleetloopError as exc:  # e.g. the pointer could not be written: the old model keeps serving
            log.error("could not swap in %s: %s", model.version, exc)
            self.host.model_event("refused", model.version, f"swap: {exc}"[:2000])

    def _failed(self, result: Failed, now: float) -> None:
        job = result.job
        assign = job.assign
        if assign is None:
            log.error("cannot load previous model %s for the hub's rollback: %s", job.version, result.reason)
            self.host.model_event("refused", job.version, f"rollback: {result.reason}"[:2000])
            return
        log.error("assignment of %s refused: %s", assign.version, result.reason)
        self.host.model_event("refused", assign.version, result.reason[:2000])
        if result.retry:
            if self._desired is not None and _key(self._desired) == _key(assign):
                self._retry_at = now + self._retry_delay
                log.info("will fetch %s again in %.0f s", assign.version, self._retry_delay)
                self._retry_delay = min(self._retry_delay * 2, MAX_RETRY_S)
        else:
            self._refuse(assign.version, assign.sha256, result.reason)
            self._answered.add(assign.msg_id)
            if self._desired is not None and _key(self._desired) == _key(assign):
                self._desired = None

    def _swap(self, model: OnnxModel) -> None:
        old = self.host.model
        # `previous` after a later rollback: the version that was previous before this swap
        restore = self.store.db.get_state(HEALTH_PREVIOUS) if self.health else self.store.previous_version
        self.store.set_active(model.version, previous=old.version,
                              state={HEALTH_PENDING: model.version, HEALTH_PREVIOUS: restore})
        self.host.switch_model(model)
        self.fallback = old
        self.health = HealthEvidence()
        log.info("swapped model %s → %s; health check over the next %d windows", old.version, model.version,
                 self.criteria.windows)
        self.host.model_event("swapped", model.version, f"from {old.version}")

    def _roll_back(self, target: OnnxModel, reason: str) -> None:
        bad = self.host.model
        restore = self.store.db.get_state(HEALTH_PREVIOUS) if self.health else None
        self._refuse(bad.version, bad.manifest.onnx_sha256, reason)
        self.store.set_active(target.version, previous=restore if restore != target.version else None,
                              state={HEALTH_PENDING: None, HEALTH_PREVIOUS: None})
        self.host.switch_model(target)
        self.health, self.fallback = None, None
        log.warning("rolled back %s → %s: %s", bad.version, target.version, reason)
        self.host.model_event("rolled_back", bad.version, f"{reason}; serving {target.version}"[:2000])

    def _start_shadow(self, model: OnnxModel, assign: Assign, now: float) -> None:
        serving = self.host.model
        if model.manifest.window != serving.manifest.window or model.n_features != serving.n_features:
            reason = f"shadow {model.version} needs other windows/features than the serving {serving.version}"
            self._refuse(assign.version, assign.sha256, reason)
            self._refused_once(assign, reason)
            return
        self._end_shadow(now)
        self.shadow, self.shadow_stats = model, ShadowStats()
        self._shadow_due = now + self.shadow_report_s
        log.info("shadowing %s beside %s", model.version, serving.version)
        self.host.model_event("loaded", model.version, f"shadow beside {serving.version}")

    def _end_shadow(self, now: float) -> None:
        if self.shadow is not None:
            self._report_shadow(now)
            log.info("shadow stage of %s ended", self.shadow.version)
            self.shadow = None

    def _report_shadow(self, now: float) -> None:
        assert self.shadow is not None
        self._shadow_due = now + self.shadow_report_s
        if self.shadow_stats.windows == 0:
            return
        metrics = self.shadow_stats.metrics()
        self.host.model_event("shadow_report", self.shadow.version, f"vs {self.host.model.version}", metrics)
        self.shadow_stats = ShadowStats()
