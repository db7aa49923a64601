"""`RolloutService`: plan, start, tick and steer rollouts (see `hub.rollout.service` for the whole story)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from hub.registry.approval import revert_refusal, rollout_refusal
from hub.registry.service import Registry, RegistryError
from hub.rollout import (
    ControlTrust,
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
from hub.rollout.errors import RolloutConflict, RolloutNotFound
from hub.rollout.records import (
    Rollout,
    default_seed,
    event_record,
    msg_id,
    settled_by,
)
from hub.rollout.reports import baseline, control_trust, expectation, performance_trust, stage_evidence
from hub.rollout.revert import retry_refusal, revert_target
from hub.rollout.service.carry import Carrier
from hub.rollout.service.traffic import TrafficYardstick
from hub.rollout.stragglers import due, stragglers
from hub.store import HubStore
from hub.store.rows import EventRow, RolloutRow
from hub.training.performance import PERFORMANCE_EVENT
from shared.errors import FleetloopError
from shared.ids import new_id
from shared.messages import Assign, Command

log = logging.getLogger(__name__)


class AssignmentPublisher(Protocol):
    """Hub → device messages (`hub.mqtt.publisher.CommandPublisher`): retained assignments and one-off commands."""

    def assign(self, device_id: str, assign: Assign) -> bool: ...

    def send(self, device_id: str, command: Command) -> bool: ...

    def is_connected(self) -> bool: ...


class RolloutService(Carrier):
    """Rollouts of registered candidates over the fleet. Thread-safe: one lock serialises every change.

    `artifact_url(version)` is where devices fetch a version (the API's ``/models/{version}/artifact`` or a
    ``file://`` directory); `policies` and `limits` are the defaults of every plan (a start may override them).
    `drift_max_age_s`: how old a drift verdict on the incumbent may be at the rollout's start to count.
    `check_artifact(version)`, when given, refuses a start whose artifact URL does not answer (ArtifactUnreachable).
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
        assign_ttl_s: float = 24 * 3600.0,
        check_artifact: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.publisher = publisher
        self.artifact_url = artifact_url
        self.check_artifact = check_artifact  # raises ArtifactUnreachable when devices could not fetch a version
        self.clock = clock
        self.policies = dict(policies or {})
        self.limits = limits or HealthLimits()
        self.drift_max_age_s = drift_max_age_s
        self.clock_skew_s = clock_skew_s
        self.baseline_window_s = baseline_window_s
        self.resync_s = resync_s
        self.assign_ttl_s = assign_ttl_s
        self._lock = threading.RLock()
        self._unsent = False  # a publish the client could not take: resync once it is connected
        self._resynced_at = clock()
        self._sent: dict[str, tuple[str, float]] = {}  # device → msg_id and time of the last assignment sent
        self.traffic = TrafficYardstick(store, registry, clock_skew_s=clock_skew_s)

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
        revert: bool = False,
    ) -> Rollout:
        """Plan `candidate` over the registry's devices (or `devices`), store it and assign the first stage.

        The incumbent is the registry's active version. RolloutConflict when a rollout is running; RolloutError
        when the candidate is not a ``candidate`` whose gate passed or was skipped (`revert`: a retired version
        active once, `revert_refusal`) or the plan is invalid; RegistryError for an unknown version.
        """
        if not actor or not reason:
            raise RolloutError("starting a rollout needs an actor and a reason")
        with self._lock:
            row = self.registry.get(candidate)
            refusal = (revert_refusal(row, self.store.model_audit(version=candidate, limit=10_000)) if revert
                       else rollout_refusal(row))
            if refusal is not None:
                raise RolloutError(refusal)
            incumbent = self.registry.active_version()
            if incumbent is None:
                raise RolloutError("no active model version to roll out over: register one as active first")
            running = self.running()
            if running is not None:
                raise RolloutConflict(f"rollout {running.id} of {running.plan.candidate} is running: "
                                      "finish, roll back or abort it first")
            self.registry.assignment(candidate, mode="active", url=self.artifact_url(candidate))  # ModelError if bad
            if self.check_artifact is not None:
                self.check_artifact(candidate)  # before anything is assigned: a wrong URL is not the model's fault
            known = {d.device_id: d.cohort for d in self.store.devices()}
            cohorts = known if devices is None else {d: known.get(d) for d in devices}
            now = self.clock()
            rollout_id = f"ro-{new_id()}"
            plan = plan_rollout(
                cohorts, rollout_id=rollout_id, candidate=candidate, incumbent=incumbent,
                seed=default_seed(candidate) if seed is None else seed, canary=canary, shadow=shadow,
                policies={**self.policies, **(policies or {})}, limits=limits or self.limits,
                baseline=self._baseline(incumbent, now), expectation=expectation(self.registry.manifest(candidate)),
            )
            state, decision = start(plan, now, actor=actor)
            new = RolloutRow(
                id=rollout_id, candidate=candidate, incumbent=incumbent, status=state.status, created_ts=now,
                updated_ts=now, actor=actor, reason=reason, plan=plan.to_dict(), state=state.to_dict(),
                decision=decision.to_dict(),
            )
            if not self.store.create_rollout(new, event=event_record(plan, state, decision, reason)):
                raise RolloutConflict("another rollout started meanwhile")
            rollout = Rollout(new, plan, state, decision)
            log.info("rollout %s of %s over %s started by %s: %s", rollout_id, candidate, incumbent, actor, reason)
            self._carry_out(rollout, decision)
            return rollout

    def revert(self, *, actor: str, reason: str) -> Rollout:
        """Return the fleet to the version the last completed rollout replaced: a new (staged, audited) rollout of
        that retired version over the active one. RolloutError when there is none or it may not return."""
        with self._lock:
            target = revert_target(self.store.rollouts(limit=1000), self.registry.active_version())
            if isinstance(target, str):
                raise RolloutError(f"cannot revert: {target}")
            version, replaced_by = target
            log.warning("revert to %s (replaced by rollout %s) asked by %s: %s", version, replaced_by, actor, reason)
            return self.start(version, actor=actor, reason=f"revert (undoing rollout {replaced_by}): {reason}",
                              revert=True)

    def retry(self, rollout_id: str, *, actor: str, reason: str) -> Rollout:
        """Roll the candidate of a rollout rolled back for failed downloads only out again, with the same stages'
        devices and policies; RolloutError when it was rolled back for another reason."""
        with self._lock:
            old = self.get(rollout_id)
            refusal = retry_refusal(old.state, old.decision)
            if refusal is not None:
                raise RolloutError(refusal)
            plan = old.plan
            if self.registry.get(plan.candidate).status == "rolled_back":  # rolled back before retries existed
                self.registry.transition(plan.candidate, "candidate", actor=actor, action="rollout_retry",
                                         reason=f"retry of rollout {rollout_id}: {reason}")
            stages = {s.name: s for s in plan.stages}
            canary: float | list[str] = list(stages["canary"].devices) if "canary" in stages else 0.1
            shadow: bool | list[str] = list(stages["shadow"].devices) if "shadow" in stages else False
            return self.start(plan.candidate, actor=actor, reason=f"retry of rollout {rollout_id}: {reason}",
                              canary=canary, shadow=shadow, policies={s.name: s.policy for s in plan.stages},
                              limits=plan.limits)

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
                trust = self.control_trust(rollout)
                # a drifted control: the candidate's expectation on the stage's traffic, else its plan's reference;
                # whatever the control, its label-free estimate there (one read and scoring for both)
                expect, estimate = self.traffic.measure(rollout.plan, rollout.state, at, expect=not trust.trusted)
                state, decision = next_step(rollout.plan, rollout.state, self.evidence(rollout), at, trust=trust,
                                            expectation=expect, estimate=estimate)
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
            newest = self.store.rollouts(limit=1)
            rollout_id = settled_by(newest[0] if newest else None, active)
            send_to = due(devices, self._sent, msg_id(rollout_id, active, "active"), now, self.resync_s)
            if not send_to:
                return []
            sent_to = self._publish(send_to, active, "active", rollout_id)
            log.info("assigned the active version %s to %d device(s) serving another: %s", active, len(sent_to),
                     ", ".join(sent_to))
            return sent_to

    def control_trust(self, rollout: Rollout) -> ControlTrust:
        """Whether the control (the incumbent) is a fair yardstick: the latest conclusive drift verdict on
        ``fleet@<incumbent>`` made since `drift_max_age_s` before the rollout started, and no ``performance_degraded``
        event of the incumbent since then (the labels show it missing failures: its numbers mislead too)."""
        scope, since = f"fleet@{rollout.plan.incumbent}", rollout.state.started_at - self.drift_max_age_s
        trust = control_trust(self.store.drift_reports(limit=100, scope=scope), scope, since=since)
        if not trust.trusted:
            return trust
        return performance_trust(self._performance_events(), rollout.plan.incumbent, since=since) or trust

    def _performance_events(self) -> Iterator[EventRow]:
        cursor = 0
        while True:  # one event per degraded (version, scope): a handful
            page = self.store.events(kind=PERFORMANCE_EVENT, since_id=cursor, limit=500)
            yield from page
            if len(page) < 500:
                return
            cursor = page[-1].id

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
        """What every fleet device reported during the current stage (see `hub.rollout.reports`)."""
        plan, state = rollout.plan, rollout.state
        events = self.store.model_events(since=state.started_at - self.clock_skew_s)
        stats = self.store.stage_stats(period_end_since=state.entered_at - self.clock_skew_s,
                                       received_since=state.entered_at, device_ids=sorted(plan.fleet))
        return stage_evidence(plan, state, events, stats)

    def _baseline(self, incumbent: str, now: float) -> Scoring | None:
        """The incumbent's own scoring over the fleet before the rollout: the control of last resort."""
        rows = self.store.stage_stats(period_end_since=now - self.baseline_window_s, received_since=-math.inf)
        return baseline(rows, incumbent)

    # -- carrying decisions out ------------------------------------------------------------------------------
    def _save(self, rollout: Rollout, state: RolloutState, decision: Decision, *, event: bool) -> bool:
        reason = state.history[-1].reason if state.history else decision.reason
        return self.store.update_rollout(
            rollout.id, revision=rollout.row.revision, status=state.status, updated_ts=state.updated_at,
            state=state.to_dict(), decision=decision.to_dict(),
            event=event_record(rollout.plan, state, decision, reason) if event else None,
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
            self._publish(command.devices, command.version, command.mode, rollout.id,
                          rollback=command.version == plan.incumbent)


__all__ = [
    "AssignmentPublisher",
    "RegistryError",
    "Rollout",
    "RolloutConflict",
    "RolloutNotFound",
    "RolloutService",
]
