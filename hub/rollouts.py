"""The I/O around the pure rollout machine (`hub.rollout`): plan, persist, gather evidence, carry decisions out.

`RolloutService.start` plans a rollout over the device registry (cohorts), stores it and assigns the first
stage; `tick(now)` builds each stage device's `Evidence` from the hub store, asks `next_step` and carries the
decision out; `pause`, `resume`, `promote`, `rollback` and `abort` do the same for an operator. Carrying a
decision out means, in this order: store the new state (guarded by a revision, with a hub event), move the
registry status of the candidate (and retire the old active version on completion) with an audit row holding
the decision's numbers, then publish: a RETAINED `Assign` (QoS 1) per device, and for a rollback the ``cmd``
``rollback`` to the devices known to serve the candidate, followed by the incumbent's retained `Assign`.

Evidence of a stage is what the hub *received* since the stage began (hub clock, `received_at`), so device
clocks do not matter within `clock_skew_s`. Model events about the candidate count from the moment the device
was assigned its current version and mode; stats and shadow reports from the moment the stage began.

Restart safety: state is stored before anything is published, and retained assignments are idempotent on the
agent, so `resync()` (call it at start-up; `tick` calls it after a publish the client could not take, and every
`resync_s`) re-publishes what the newest rollout says each device should serve, under the same msg_id.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hub.registry import Registry, RegistryError
from hub.rollout import (
    Decision,
    Evidence,
    HealthLimits,
    RolloutError,
    RolloutPlan,
    RolloutState,
    Scoring,
    StageName,
    StagePolicy,
    abort,
    next_step,
    pause,
    plan_rollout,
    promote,
    resume,
    rollback,
    start,
)
from hub.rollout.evidence import pool
from hub.store import HubStore, ModelEventRow
from hub.store.rollouts import RolloutRow, StageStatsRow
from shared.ids import new_id
from shared.messages import Assign, Command

log = logging.getLogger(__name__)

STAGE_STATUS: Mapping[StageName, str] = {"shadow": "shadow", "canary": "canary", "fleet": "canary"}
"""The candidate's registry status during each stage; it becomes ``active`` only when the rollout completes."""
LOADED_EVENTS = frozenset({"loaded", "swapped", "health_ok"})


class RolloutNotFound(RolloutError):
    """No rollout with this id (HTTP 404)."""


class RolloutConflict(RolloutError):
    """Another rollout is running, or this one changed meanwhile (HTTP 409)."""


class AssignmentPublisher(Protocol):
    """Hub → device messages (`hub.commands.CommandPublisher`): retained assignments and one-off commands."""

    def assign(self, device_id: str, assign: Assign) -> bool: ...

    def send(self, device_id: str, command: Command) -> bool: ...

    def is_connected(self) -> bool: ...


@dataclass(frozen=True)
class Rollout:
    """A stored rollout: its row (who, when, why), plan, state and last decision."""

    row: RolloutRow
    plan: RolloutPlan
    state: RolloutState
    decision: Decision | None

    @property
    def id(self) -> str:
        return self.row.id

    @classmethod
    def from_row(cls, row: RolloutRow) -> Rollout:
        return cls(row, RolloutPlan.from_dict(row.plan), RolloutState.from_dict(row.state),
                   None if row.decision is None else Decision.from_dict(row.decision))


class RolloutService:
    """Rollouts of registered candidates over the fleet. Thread-safe: one lock serialises every change.

    `artifact_url(version)` is where devices fetch a version (the API's ``/models/{version}/artifact`` or a
    ``file://`` directory); `policies` and `limits` are the defaults of every plan (a start may override them).
    """

    def __init__(
        self,
        store: HubStore,
        registry: Registry,
        publisher: AssignmentPublisher,
        *,
        artifact_url: Callable[[str], str],
        clock: Callable[[], float] = time.time,
        policies: Mapping[StageName, StagePolicy] | None = None,
        limits: HealthLimits | None = None,
        clock_skew_s: float = 300.0,
        baseline_window_s: float = 24 * 3600.0,
        resync_s: float | None = 600.0,
    ) -> None:
        self.store = store
        self.registry = registry
        self.publisher = publisher
        self.artifact_url = artifact_url
        self.clock = clock
        self.policies = dict(policies or {})
        self.limits = limits
        self.clock_skew_s = clock_skew_s
        self.baseline_window_s = baseline_window_s
        self.resync_s = resync_s
        self._lock = threading.RLock()
        self._unsent = False  # a publish the client could not take: resync once it is connected
        self._resynced_at = clock()

    # -- reads -------------------------------------------------------------------------------------------
    def get(self, rollout_id: str) -> Rollout:
        row = self.store.rollout(rollout_id)
        if row is None:
            raise RolloutNotFound(f"no rollout {rollout_id!r}")
        return Rollout.from_row(row)

    def recent(self, *, status: str | None = None, limit: int = 100) -> list[Rollout]:
        """Newest first."""
        return [Rollout.from_row(r) for r in self.store.rollouts(status=status, limit=limit)]

    def running(self) -> Rollout | None:
        rows = self.store.rollouts(status="running", limit=1)
        return Rollout.from_row(rows[0]) if rows else None

    # -- start -------------------------------------------------------------------------------------------
    def start(
        self,
        candidate: str,
        *,
        actor: str,
        reason: str,
        canary: float | Sequence[str] = 0.1,
        shadow: bool | float | Sequence[str] = False,
        seed: int | None = None,
        devices: Iterable[str] | None = None,
        policies: Mapping[StageName, StagePolicy] | None = None,
        limits: HealthLimits | None = None,
    ) -> Rollout:
        """Plan `candidate` over the registry's devices (or `devices`), store it and assign the first stage.

        The incumbent is the registry's active version. RolloutConflict when a rollout is running; RolloutError
        when the candidate is not a ``candidate`` or the plan is invalid; RegistryError for an unknown version.
        """
        if not actor or not reason:
            raise RolloutError("starting a rollout needs an actor and a reason")
        with self._lock:
            row = self.registry.get(candidate)
            if row.status != "candidate":
                raise RolloutError(f"{candidate} is {row.status}: only a candidate can be rolled out")
            incumbent = self.registry.active_version()
            if incumbent is None:
                raise RolloutError("no active model version to roll out over: register one as active first")
            running = self.running()
            if running is not None:
                raise RolloutConflict(f"rollout {running.id} of {running.plan.candidate} is running: "
                                      "finish, roll back or abort it first")
            self.registry.assignment(candidate, mode="active", url=self.artifact_url(candidate))  # ModelError if bad
            known = {d.device_id: d.cohort for d in self.store.devices()}
            cohorts = known if devices is None else {d: known.get(d) for d in devices}
            now = self.clock()
            rollout_id = f"ro-{new_id()}"
            plan = plan_rollout(
                cohorts, rollout_id=rollout_id, candidate=candidate, incumbent=incumbent,
                seed=_seed(candidate) if seed is None else seed, canary=canary, shadow=shadow,
                policies={**self.policies, **(policies or {})}, limits=limits or self.limits,
                baseline=self._baseline(incumbent, now),
            )
            state, decision = start(plan, now, actor=actor)
            new = RolloutRow(
                id=rollout_id, candidate=candidate, incumbent=incumbent, status=state.status, created_ts=now,
                updated_ts=now, actor=actor, reason=reason, plan=plan.to_dict(), state=state.to_dict(),
                decision=decision.to_dict(),
            )
            if not self.store.create_rollout(new, event=_event(plan, state, decision, reason)):
                raise RolloutConflict("another rollout started meanwhile")
            rollout = Rollout(new, plan, state, decision)
            log.info("rollout %s of %s over %s started by %s: %s", rollout_id, candidate, incumbent, actor, reason)
            self._carry_out(rollout, decision)
            return rollout

    # -- the periodic step -------------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> list[Decision]:
        """Judge every running rollout on its evidence and carry the decision out; returns the decisions."""
        now = self.clock() if now is None else now
        decisions: list[Decision] = []
        with self._lock:
            due = self.resync_s is not None and now - self._resynced_at >= self.resync_s
            if (self._unsent or due) and self.publisher.is_connected():
                self.resync()
                self._resynced_at = now
            for row in self.store.rollouts(status="running"):
                rollout = Rollout.from_row(row)
                at = max(now, rollout.state.updated_at)
                state, decision = next_step(rollout.plan, rollout.state, self.evidence(rollout), at)
                changed = decision.kind != "wait"
                if not self._save(rollout, state, decision, event=changed):
                    log.info("rollout %s changed while it was judged; judged again next tick", rollout.id)
                    continue
                if changed:
                    log.info("rollout %s: %s", rollout.id, decision.reason)
                    self._carry_out(Rollout(rollout.row, rollout.plan, state, decision), decision)
                decisions.append(decision)
        return decisions

    # -- operator actions ----------------------------------------------------------------------------------
    def pause(self, rollout_id: str, *, actor: str, reason: str) -> Rollout:
        return self._act(pause, rollout_id, actor, reason)

    def resume(self, rollout_id: str, *, actor: str, reason: str) -> Rollout:
        return self._act(resume, rollout_id, actor, reason)

    def promote(self, rollout_id: str, *, actor: str, reason: str) -> Rollout:
        return self._act(promote, rollout_id, actor, reason)

    def rollback(self, rollout_id: str, *, actor: str, reason: str) -> Rollout:
        return self._act(rollback, rollout_id, actor, reason)

    def abort(self, rollout_id: str, *, actor: str, reason: str) -> Rollout:
        return self._act(abort, rollout_id, actor, reason)

    def _act(
        self, action: Callable[[RolloutPlan, RolloutState, float, str, str], tuple[RolloutState, Decision]],
        rollout_id: str, actor: str, reason: str,
    ) -> Rollout:
        with self._lock:
            rollout = self.get(rollout_id)
            now = max(self.clock(), rollout.state.updated_at)
            state, decision = action(rollout.plan, rollout.state, now, actor, reason)
            if not self._save(rollout, state, decision, event=True):
                raise RolloutConflict(f"rollout {rollout_id} changed meanwhile: try again")
            done = Rollout(rollout.row, rollout.plan, state, decision)
            log.info("rollout %s: %s", rollout_id, decision.reason)
            self._carry_out(done, decision)
            return self.get(rollout_id)

    # -- evidence ------------------------------------------------------------------------------------------
    def evidence(self, rollout: Rollout) -> dict[str, Evidence]:
        """What every fleet device reported during the current stage (see the module docstring)."""
        plan, state = rollout.plan, rollout.state
        fleet = set(plan.fleet)
        since = assigned_since(plan, state)
        events = [
            e for e in self.store.model_events(since=state.started_at - self.clock_skew_s)
            if e.device_id in fleet and e.version == plan.candidate and e.received_at >= state.started_at
        ]
        stats = self.store.stage_stats(period_end_since=state.entered_at - self.clock_skew_s,
                                       received_since=state.entered_at, device_ids=sorted(fleet))
        shadow = plan.stage(state.stage).mode == "shadow"
        by_device: dict[str, list[ModelEventRow]] = defaultdict(list)
        for e in events:
            by_device[e.device_id].append(e)
        stats_by: dict[str, list[StageStatsRow]] = defaultdict(list)
        for s in stats:
            stats_by[s.device_id].append(s)
        out: dict[str, Evidence] = {}
        for device in sorted(set(by_device) | set(stats_by)):
            out[device] = device_evidence(
                by_device[device], stats_by[device], candidate=plan.candidate, incumbent=plan.incumbent,
                assigned_at=since.get(device, state.entered_at), entered_at=state.entered_at, shadow=shadow,
            )
        return out

    def _baseline(self, incumbent: str, now: float) -> Scoring | None:
        """The incumbent's own scoring over the fleet before the rollout: the control of last resort."""
        rows = self.store.stage_stats(period_end_since=now - self.baseline_window_s, received_since=-math.inf)
        base = scoring(r for r in rows if r.model_version == incumbent)
        return base if base.windows else None

    # -- carrying decisions out ------------------------------------------------------------------------------
    def _save(self, rollout: Rollout, state: RolloutState, decision: Decision, *, event: bool) -> bool:
        reason = state.history[-1].reason if state.history else decision.reason
        return self.store.update_rollout(
            rollout.id, revision=rollout.row.revision, status=state.status, updated_ts=state.updated_at,
            state=state.to_dict(), decision=decision.to_dict(),
            event=_event(rollout.plan, state, decision, reason) if event else None,
        )

    def _carry_out(self, rollout: Rollout, decision: Decision) -> None:
        """Registry status (audited) first, then the devices: a failed publish is retried by `resync`."""
        self._registry(rollout, decision)
        plan = rollout.plan
        for command in decision.commands:
            if command.kind == "rollback":
                serving = {d.device_id: d.model_version for d in self.store.devices()}
                order = Command(ts=self.clock(), cmd="rollback")
                for device in command.devices:
                    # only a device serving the candidate: `rollback` swaps to whatever the device had before
                    if serving.get(device) == plan.candidate:
                        self._unsent |= not self.publisher.send(device, order)
            self._publish(command.devices, command.version, command.mode, rollout.id)

    def _publish(self, devices: Iterable[str], version: str, mode: str, rollout_id: str) -> None:
        assign = self.registry.assignment(version, mode=mode, url=self.artifact_url(version), rollout_id=rollout_id)
        # One msg_id per (rollout, version, mode): a re-sent assignment is recognisably the same one, so a device
        # that refused it reports that once, not after every resync.
        assign = assign.model_copy(update={"msg_id": f"{rollout_id}/{version}/{mode}"})
        failed = [d for d in devices if not self.publisher.assign(d, assign)]
        if failed:
            self._unsent = True
            log.warning("%d assignment(s) of %s not sent yet (broker connection); re-sent on reconnect",
                        len(failed), version)

    def _registry(self, rollout: Rollout, decision: Decision) -> None:
        plan, state = rollout.plan, rollout.state
        last = state.history[-1]
        details: dict[str, Any] = {
            "rollout_id": rollout.id, "decision": decision.kind, "stage": decision.stage,
            "numbers": {k: v for k, v in decision.numbers.items() if math.isfinite(v)},
        }
        target = {"completed": "active", "rolled_back": "rolled_back", "aborted": "candidate"}.get(
            state.status, STAGE_STATUS[state.stage])
        reason = f"{last.reason}: {rollout.row.reason}" if last.action == "start" else last.reason
        self.registry.transition(plan.candidate, target, actor=last.actor, action=f"rollout_{last.action}",
                                 reason=reason, details=details)
        if state.status == "completed":
            for old in self.store.model_versions(status="active", limit=1000):
                if old.version != plan.candidate:
                    self.registry.transition(old.version, "retired", actor=last.actor, action="rollout_retire",
                                             reason=f"replaced by {plan.candidate} (rollout {rollout.id})",
                                             details=details)

    def resync(self) -> int:
        """Re-publish what the newest rollout says each of its devices serves; returns how many devices.

        Running: the candidate (in the stage's mode) on the stage devices. Completed: the candidate everywhere.
        Rolled back or aborted: the incumbent everywhere. Retained and idempotent on the agent.
        """
        with self._lock:
            self._unsent = False
            rows = self.store.rollouts(limit=1)
            if not rows:
                return 0
            r = Rollout.from_row(rows[0])
            plan, state = r.plan, r.state
            if state.status == "running":
                stage = plan.stage(state.stage)
                self._publish(stage.devices, plan.candidate, stage.mode, r.id)
                return len(stage.devices)
            version = plan.candidate if state.status == "completed" else plan.incumbent
            self._publish(plan.fleet, version, "active", r.id)
            return len(plan.fleet)


# -- evidence, pure over store rows --------------------------------------------------------------------------
def assigned_since(plan: RolloutPlan, state: RolloutState) -> dict[str, float]:
    """When each device holding the candidate got its current (version, mode): the stage that changed it."""
    target: dict[str, tuple[str, str]] = {}
    since: dict[str, float] = {}
    for t in state.history:
        if t.status != "running" or t.action not in ("start", "advance", "promote"):
            continue
        stage = plan.stage(t.to_stage)
        for device in plan.fleet:
            now = (plan.candidate, stage.mode) if device in stage.devices else (plan.incumbent, "active")
            if target.get(device) != now:
                target[device], since[device] = now, t.at
    return {d: at for d, at in since.items() if target[d][0] == plan.candidate}


def device_evidence(
    events: Sequence[ModelEventRow], stats: Sequence[StageStatsRow], *, candidate: str, incumbent: str,
    assigned_at: float, entered_at: float, shadow: bool,
) -> Evidence:
    """One device's evidence from its model events about the candidate and its stats (oldest first)."""
    current = [e for e in events if e.received_at >= assigned_at]
    kinds = {e.event for e in current}
    problems = [e for e in current if e.event in ("refused", "health_failed", "rolled_back")]
    cand_stats = [s for s in stats if s.model_version == candidate]
    inc_stats = [s for s in stats if s.model_version == incumbent]
    if shadow:
        reports = [e for e in events if e.event == "shadow_report" and e.received_at >= entered_at]
        cand: Scoring | None = shadow_scoring(reports) if reports else None
        disagreements = sum(int(e.metrics.get("disagreements", 0)) for e in reports)
    else:
        cand, disagreements = (scoring(cand_stats) if cand_stats else None), 0
    return Evidence(
        loaded=bool(kinds & LOADED_EVENTS) or bool(cand_stats),
        refused="refused" in kinds,
        health_failed="health_failed" in kinds,
        rolled_back="rolled_back" in kinds,
        candidate=cand,
        incumbent=scoring(inc_stats) if inc_stats else None,
        disagreements=disagreements,
        detail=problems[-1].detail if problems else None,
    )


def scoring(rows: Iterable[StageStatsRow]) -> Scoring:
    """Stats rows pooled: counts and histograms summed, latency the worst p99 (rows whose bins differ skip it)."""
    parts = []
    for r in rows:
        lat = r.latency_p99_ms if r.latency_p99_ms is not None and math.isfinite(r.latency_p99_ms) else None
        parts.append(Scoring(r.windows, r.anomalies, r.inference_errors, r.nan_scores, lat, tuple(r.score_hist)))
    lengths = {len(p.score_hist) for p in parts if p.score_hist}
    if len(lengths) > 1:  # a version with other score bins: compare counts, not histograms
        parts = [Scoring(p.windows, p.anomalies, p.inference_errors, p.nan_scores, p.latency_p99_ms) for p in parts]
    return pool(parts)


def shadow_scoring(reports: Iterable[ModelEventRow]) -> Scoring:
    """The candidate's scoring from shadow reports. They carry no p99: the worst per-report mean stands in
    (a per-report max is one scheduling hiccup's), and no histogram (the machine compares disagreement)."""
    windows = anomalies = errors = nans = 0
    latency: float | None = None
    for e in reports:
        m = e.metrics
        windows += int(m.get("windows", 0))
        anomalies += round(m.get("shadow_anomaly_rate", 0.0) * m.get("compared", 0.0))
        errors += int(m.get("inference_errors", 0))
        nans += int(m.get("nan_scores", 0))
        lat = m.get("latency_p99_ms", m.get("latency_mean_ms"))
        if lat is not None:
            latency = lat if latency is None else max(latency, lat)
    return Scoring(windows, anomalies, errors, nans, latency)


def _seed(candidate: str) -> int:
    """The default plan seed: the same candidate picks the same canary devices."""
    return int(hashlib.sha256(candidate.encode()).hexdigest()[:8], 16)


def _event(plan: RolloutPlan, state: RolloutState, decision: Decision, reason: str) -> dict[str, Any]:
    last = state.history[-1]
    return {
        "rollout_id": plan.rollout_id, "candidate": plan.candidate, "incumbent": plan.incumbent,
        "action": last.action, "actor": last.actor, "from_stage": last.from_stage, "to_stage": last.to_stage,
        "status": state.status, "decision": decision.kind, "reason": reason,
        "numbers": {k: v for k, v in decision.numbers.items() if math.isfinite(v)},
    }


__all__ = [
    "AssignmentPublisher",
    "RegistryError",
    "Rollout",
    "RolloutConflict",
    "RolloutNotFound",
    "RolloutService",
    "assigned_since",
    "device_evidence",
]
