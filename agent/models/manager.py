"""Hub → device model assignment in the loop thread: swap, health-check, roll back, shadow.

The preparer (`agent.models.prepare`) fetches, verifies and loads a candidate in the background while the
incumbent keeps serving; `ModelManager`, in the loop thread, swaps it in between two windows, health-checks
it over the next windows (`agent.models.health`) and rolls back by itself when it fails; or, in shadow mode,
scores it beside the incumbent and reports the disagreement. Pointers in SQLite move only after a version
is installed, verified and loaded, so a kill -9 anywhere leaves the device serving a verified model; a
pending health check is persisted and resumed after a restart.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Literal, Protocol

import numpy as np

from agent.models.admission import Accepted, admit, verify_approval
from agent.models.health import HealthCriteria, HealthEvidence, ShadowStats, health_verdict
from agent.models.onnx import OnnxModel
from agent.models.prepare import Failed, Job, Preparer, Ready
from agent.models.store import ModelStore
from agent.models.trial import current_rss_mb
from shared.errors import FleetloopError, ModelError, ModelIntegrityError
from shared.messages import Assign

log = logging.getLogger(__name__)

ModelEventKind = Literal["loaded", "refused", "swapped", "rolled_back", "health_ok", "health_failed", "shadow_report"]

HEALTH_PENDING = "model.health_pending"  # version under health check (survives a restart)
HEALTH_PREVIOUS = "model.health_previous"  # what `previous` should be again after rolling back
REFUSED = "model.refused"  # JSON {"version@sha256": {"version", "sha256", "reason"}}: never served again
ASSIGN_ACCEPTED = "model.assign_accepted"  # JSON of `Accepted`: the newest approved assignment (anti-replay)
MAX_REFUSALS = 64
MAX_RETRY_S = 3600.0


class ModelHost(Protocol):
    """What the manager needs from the agent loop."""

    model: OnnxModel
    device_id: str

    def switch_model(self, model: OnnxModel) -> None:
        """Flush stats for the serving model, then serve `model` from the next window on."""

    def model_event(self, event: ModelEventKind, version: str, detail: str | None,
                    metrics: dict[str, float] | None = None) -> None: ...


def _key(assign: Assign) -> tuple[str, str, str, str]:
    """What a fetch is of: a newer assignment with another url replaces a pending one (a corrected mirror)."""
    return assign.version, assign.sha256, assign.mode, assign.url


def refusal_key(version: str, sha256: str) -> str:
    return f"{version}@{sha256}"


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
        self._inflight: set[tuple[str, str, str, str]] = set()
        self._retry_at: float | None = None
        self._retry_delay = retry_s
        self._answered: set[str] = set()  # msg ids of refused assignments already reported
        self._resume_health_check()

    # -- persistent state ------------------------------------------------------------------------------------
    def refusals(self) -> dict[str, dict[str, str]]:
        """Refused content, keyed ``version@sha256`` of what was actually received and checked (older
        databases keyed by version alone are read the same way)."""
        raw = self.store.db.get_state(REFUSED)
        try:
            stored = dict(json.loads(raw)) if raw else {}
        except ValueError:
            return {}
        refused: dict[str, dict[str, str]] = {}
        for key, entry in stored.items():
            if isinstance(entry, dict) and "sha256" in entry:
                version = str(entry.get("version", key))
                refused[refusal_key(version, entry["sha256"])] = {**entry, "version": version}
        return refused

    def refused(self, version: str, sha256: str) -> dict[str, str] | None:
        return self.refusals().get(refusal_key(version, sha256))

    def _refuse(self, version: str, sha256: str, reason: str) -> None:
        """Refuse (version, sha256) for good: only for content that verified (its sha256 is what was received)."""
        refused = self.refusals()
        key = refusal_key(version, sha256)
        refused.pop(key, None)
        refused[key] = {"version": version, "sha256": sha256, "reason": reason[:500]}
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
        self.health = HealthEvidence(baseline_rss_mb=current_rss_mb())
        previous = self.store.previous_version
        if previous is not None:
            try:
                self.fallback = self.store.load(previous)
            except ModelError as exc:
                log.error("cannot load previous model %s to fall back on: %s", previous, exc)

    # -- inbound ---------------------------------------------------------------------------------------------
    def _admit(self, assign: Assign, now: float) -> bool:
        """The hub approved this assignment for this device, it has not expired and is not older than the newest
        accepted (`agent.models.admission`); a newer one is remembered before anything is fetched."""
        verifier = self.store.verifier
        reason = ""
        try:
            if verifier is not None:
                verify_approval(assign, verifier)
            last = Accepted.from_json(self.store.db.get_state(ASSIGN_ACCEPTED))
            verdict, reason = admit(assign, device_id=self.host.device_id, now=now, last=last,
                                    signed=verifier is not None)
        except ModelIntegrityError as exc:
            verdict, reason = "refuse", str(exc)
        if verdict == "refuse":
            serving = self.host.model
            if assign.mode == "active" and assign.version == serving.version and assign.sha256 == \
                    serving.manifest.onnx_sha256:
                log.info("assignment of the serving %s not admitted (changes nothing): %s", assign.version, reason)
            else:
                self._refused_once(assign, f"assignment not admitted: {reason}")
            return False
        if verdict == "new" and assign.counter is not None and assign.approval:
            self.store.db.set_state({ASSIGN_ACCEPTED: Accepted(assign.counter, assign.approval).to_json()})
            if assign.rollback:
                log.warning("signed rollback to %s (counter %d)", assign.version, assign.counter)
        return True

    def on_assign(self, assign: Assign, now: float) -> None:
        """A (retained) assignment: act only on what changes what this device serves or shadows."""
        if not self._admit(assign, now):
            return
        serving = self.host.model
        if assign.mode == "active" and assign.version == serving.version:  # e.g. redelivered on reconnect
            self._end_shadow(now)
            self._desired = None
            if assign.sha256 != serving.manifest.onnx_sha256:
                self._refused_once(assign, f"already serving {serving.version} with sha256 "
                                           f"{serving.manifest.onnx_sha256}")
            return
        refused = self.refused(assign.version, assign.sha256)
        if refused is not None:
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
        watch = self.criteria.rss_growth_mb is not None
        self.health.add(error=error, finite=finite, latency_s=latency_s, rss_mb=current_rss_mb() if watch else None)
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
            self._refuse(assign.version, result.received or assign.sha256, result.reason)
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
        self.health = HealthEvidence(baseline_rss_mb=current_rss_mb())
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
        if (model.manifest.window != serving.manifest.window or model.n_features != serving.n_features
                or model.manifest.regimes != serving.manifest.regimes):
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

