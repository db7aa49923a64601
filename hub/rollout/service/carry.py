"""Carrying a rollout's decisions out, and re-publishing them after a restart: registry moves and signed, retained
assignments. A part of `RolloutService` (its base class), kept apart to keep modules small."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from hub.registry.service import Registry
from hub.rollout import Decision
from hub.rollout.records import STAGE_STATUS, Rollout, msg_id, registry_move
from hub.store import HubStore
from shared.wire import replace

if TYPE_CHECKING:
    from hub.rollout.service.rollouts import AssignmentPublisher

log = logging.getLogger(__name__)


class Carrier:
    """Registry moves and assignment publishing over the attributes `RolloutService` sets."""

    store: HubStore
    registry: Registry
    publisher: AssignmentPublisher
    artifact_url: Callable[[str], str]
    clock: Callable[[], float]
    assign_ttl_s: float
    _lock: threading.RLock
    _sent: dict[str, tuple[str, float]]
    _unsent: bool

    def _publish(self, devices: Iterable[str], version: str, mode: str, rollout_id: str | None, *,
                 rollback: bool = False) -> list[str]:
        """Publish the retained assignment, signed for each of `devices` (one msg_id per rollout, version and
        mode); returns those the client took."""
        assign = self.registry.assignment(version, mode=mode, url=self.artifact_url(version), rollout_id=rollout_id)
        assign = replace(assign, msg_id=msg_id(rollout_id, version, mode))
        sent: list[str] = []
        failed: list[str] = []
        for d in devices:
            signed = self.registry.signed_assignment(assign, device_id=d, ttl_s=self.assign_ttl_s, rollback=rollback)
            (sent if self.publisher.assign(d, signed) else failed).append(d)
        at = self.clock()
        self._sent.update((d, (assign.msg_id, at)) for d in sent)
        if failed:
            self._unsent = True
            log.warning("%d assignment(s) of %s not sent yet (broker connection); re-sent on reconnect",
                        len(failed), version)
        return sent

    def _registry(self, rollout: Rollout, decision: Decision) -> None:
        move, plan = registry_move(rollout, decision), rollout.plan
        if move.status == "active":  # active first, then the old one retired: never no active version
            self.registry.activate(plan.candidate, actor=move.actor, action=move.action, reason=move.reason,
                                   details=move.details, retire_action="rollout_retire",
                                   retire_reason=f"replaced by {plan.candidate} (rollout {rollout.id})")
            return
        self.registry.transition(plan.candidate, move.status, actor=move.actor, action=move.action,
                                 reason=move.reason, details=move.details)

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
            self._publish(plan.fleet, version, "active", r.id, rollback=version == plan.incumbent)
            return len(plan.fleet)
