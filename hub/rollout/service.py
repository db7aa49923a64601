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
was assigned its current version and mode; stats and shadow reports from the moment the stage began. Whether
the control can be trusted comes from the drift job: the latest conclusive verdict on ``fleet@<incumbent>``
since `drift_max_age_s` before the rollout started (a drifted incumbent makes the candidate's own manifest
reference, stored with the plan as its `Expectation`, the yardstick; see `hub.rollout.health`).

Late joiners: each tick also assigns the registry's active version (retained) to every online device that no
running rollout speaks for and that reports another version (`hub.rollout.stragglers`): a device that came
online after a rollout completed, or one that booted an old model. Presence and versions come from the
devices' retained status messages in the device registry. An assignment is re-sent to a device that still
reports another version only every `resync_s`, under the same msg_id.

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

from hub.registry.service import Registry, RegistryError
from hub.rollout import (
    ControlTrust,
    Decision,
    Evidence,
    Expectation,
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
from hub.rollout.stragglers import stragglers
from hub.store import HubStore, ModelEventRow
from hub.store.rows import RolloutRow, StageStatsRow
from shared.errors import FleetloopError
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
    """Hub → device messages (`hub.mqtt.publisher.CommandPublisher`): retained assignments and one-off commands."""

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
    `drift_max_age_s`: how old a drift verdict on the incumbent may be at the rollout's start to count.
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
        drift_max_age_s: float = 2 * 24 * 3600.0,
    ) -> None:
        self.store = store
        self.registry = registry
        self.publisher = publisher
        self.artifact_url = artifact_url
        self.clock = clock
        self.policies = dict(policies or {})
        self.limits = limits or HealthLimits()
        self.drift_max_age_s = drift_max_age_s
        self.clock_skew_s = clock_skew_s
        self.baseline_window_s = baseline_window_s
        self.resync_s = resync_s
        self._lock = threading.RLock()
        self._unsent = False  # a publish the client could not take: resync once it is connected
        self._resynced_at = clock()
        self._sent: dict[str, tuple[str, float]] = {}  # device → msg_id and time of the last assignment sent

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
                baseline=self._baseline(incumbent, now), expectation=self._expectation(candidate),
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
                state, decision = next_step(rollout.plan, rollout.state, self.evidence(rollout), at,
                                            trust=self.control_trust(rollout))
                changed = decision.kind != "wait"
                if not self._save(rollout, state, decision, event=changed):
                    log.info("rollout %s changed while it was judged; judged again next tick", rollout.id)
                    continue
                if changed:
                    log.info("rollout %s: %s", rollout.id, decision.reason)
                    self._carry_out(Rollout(rollout.row, rollout.plan, state, decision), decision)
                decisions.append(decision)
            try:
                self.catch_up(now)
            except FleetloopError:  # a registry artifact that no longer verifies: logged, tried again next tick
                log.exception("could not assign the active version to late joiners")
        return decisions

    def catch_up(self, now: float | None = None) -> list[str]:
        """Assign the active version to the online devices no running rollout speaks for that serve another
        (late joiners); returns the devices sent an assignment. Called by every `tick`."""
        now = self.clock() if now is None else now
        with self._lock:
            active = self.registry.active_version()
            covered = {d for r in self.store.rollouts(status="running") for d in Rollout.from_row(r).plan.fleet}
            devices = stragglers(self.store.devices(), active, covered)
            if active is None or not devices:
                return []
            rollout_id = self._settled_by(active)
            msg_id = f"{rollout_id or 'registry'}/{active}/active"
            # a device still swapping to what it was just sent (by a rollout or a catch-up) needs no second copy
            due = [d for d in devices if (sent := self._sent.get(d)) is None or sent[0] != msg_id
                   or (self.resync_s is not None and now - sent[1] >= self.resync_s)]
            if not due:
                return []
            sent_to = self._publish(due, active, "active", rollout_id, msg_id=msg_id)
            log.info("assigned the active version %s to %d device(s) serving another: %s", active, len(sent_to),
                     ", ".join(sent_to))
            return sent_to

    def control_trust(self, rollout: Rollout) -> ControlTrust:
        """Whether the control (the incumbent) is a fair yardstick: the latest conclusive drift verdict on
        ``fleet@<incumbent>`` made since `drift_max_age_s` before the rollout started."""
        scope = f"fleet@{rollout.plan.incumbent}"
        since = rollout.state.started_at - self.drift_max_age_s
        for report in self.store.drift_reports(limit=100, scope=scope):
            if report.ts < since:
                continue
            if report.verdict in ("drift", "no_drift"):
                reason = report.report.get("reason")
                return ControlTrust.from_drift(scope, report.verdict, at=report.ts,
                                               detail=reason if isinstance(reason, str) else None)
        return ControlTrust.from_drift(scope, None)

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

    def _expectation(self, candidate: str) -> Expectation | None:
        """The candidate's own expectation of its scoring, from its manifest's reference and threshold."""
        manifest = self.registry.manifest(candidate)
        if manifest is None:
            return None
        ref = manifest.reference
        try:
            return Expectation.from_reference(ref.score_bin_edges, ref.score_histogram, manifest.threshold)
        except RolloutError as exc:  # an empty reference histogram: the control stays the only yardstick
            log.warning("no expectation of %s from its manifest: %s", candidate, exc)
            return None

    def _settled_by(self, version: str) -> str | None:
        """The newest rollout if it ended with the fleet on `version` (its id names the assignment, as in
        `resync`, so a device sees one assignment whichever path sent it); None otherwise."""
        rows = self.store.rollouts(limit=1)
        if not rows or rows[0].status == "running":
            return None
        row = rows[0]
        return row.id if (row.candidate if row.status == "completed" else row.incumbent) == version else None

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

    def _publish(self, devices: Iterable[str], version: str, mode: str, rollout_id: str | None, *,
                 msg_id: str | None = None) -> list[str]:
        """Publish the retained assignment to `devices`; returns those the client took."""
        assign = self.registry.assignment(version, mode=mode, url=self.artifact_url(version), rollout_id=rollout_id)
        # One msg_id per (rollout, version, mode): a re-sent assignment is recognisably the same one, so a device
        # that refused it reports that once, not after every resync.
        assign = assign.model_copy(update={"msg_id": msg_id or f"{rollout_id}/{version}/{mode}"})
        sent: list[str] = []
        failed: list[str] = []
        for d in devices:
            (sent if self.publisher.assign(d, assign) else failed).append(d)
        at = self.clock()
        self._sent.update((d, (assign.msg_id, at)) for d in sent)
        if failed:
            self._unsent = True
            log.warning("%d assignment(s) of %s not sent yet (broker connection); re-sent on reconnect",
                        len(failed), version)
        return sent

    def _registry(self, rollout: Rollout, decision: Decision) -> None:
        plan, state = rollout.plan, rollout.state
        last = state.history[-1]
        details: dict[str, Any] = {
            "rollout_id": rollout.id, "decision": decision.kind, "stage": decision.stage,
            "numbers": {k: v for k, v in decision.numbers.items() if math.isfinite(v)},
        }
        if decision.yardstick is not None:
            details["yardstick"] = decision.yardstick.to_dict()
        reason = f"{last.reason}: {rollout.row.reason}" if last.action == "start" else last.reason
        if state.status == "completed":  # active first, then the old one retired: never no active version
            self.registry.activate(plan.candidate, actor=last.actor, action=f"rollout_{last.action}", reason=reason,
                                   details=details, retire_action="rollout_retire",
                                   retire_reason=f"replaced by {plan.candidate} (rollout {rollout.id})")
            return
        target = {"rolled_back": "rolled_back", "aborted": "candidate"}.get(state.status, STAGE_STATUS[state.stage])
        self.registry.transition(plan.candidate, target, actor=last.actor, action=f"rollout_{last.action}",
                                 reason=reason, details=details)

    def _finish_completion(self, r: Rollout) -> None:
        """The newest rollout completed but a crash cut its registry moves short (the candidate not active yet,
        or the incumbent still active): finish them. Idempotent."""
        if r.state.status != "completed":
            return
        plan, last = r.plan, r.state.history[-1]
        candidate, incumbent = self.registry.get(plan.candidate).status, self.registry.get(plan.incumbent).status
        if (candidate, incumbent) != ("active", "active") and candidate not in STAGE_STATUS.values():
            return  # done, or moved on since by someone else
        log.warning("rollout %s completed but the registry still says %s %s, %s %s: finishing", r.id,
                    plan.candidate, candidate, plan.incumbent, incumbent)
        self.registry.activate(plan.candidate, actor=last.actor, action=f"rollout_{last.action}",
                               reason=f"{last.reason} (finished after a restart)", details={"rollout_id": r.id},
                               retire=[plan.incumbent], retire_action="rollout_retire",
                               retire_reason=f"replaced by {plan.candidate} (rollout {r.id})")

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
            self._finish_completion(r)
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
        "yardstick": None if decision.yardstick is None else decision.yardstick.to_dict(),
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
