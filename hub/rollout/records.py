"""What a rollout leaves behind, computed without I/O: the stored `Rollout`, its hub events, the registry moves
(with their audit details) a decision asks for, and the names of the assignments it publishes."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hub.rollout.plan import RolloutPlan, StageName
from hub.rollout.revert import infra_failure
from hub.rollout.state import Decision, RolloutState
from hub.store.rows import RolloutRow

STAGE_STATUS: Mapping[StageName, str] = {"shadow": "shadow", "canary": "canary", "fleet": "canary"}
"""The candidate's registry status during each stage; it becomes ``active`` only when the rollout completes."""


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


@dataclass(frozen=True)
class RegistryMove:
    """Where a decision moves the candidate in the registry: `status` (``active`` retires the incumbent), with
    the actor, action and reason of its audit row and the decision's numbers as its details."""

    status: str
    actor: str
    action: str
    reason: str
    details: dict[str, Any]


def default_seed(candidate: str) -> int:
    """The default plan seed: the same candidate picks the same canary devices."""
    return int(hashlib.sha256(candidate.encode()).hexdigest()[:8], 16)


def finite(numbers: Mapping[str, float]) -> dict[str, float]:
    """A decision's numbers without the infinite or NaN ones (they do not survive JSON)."""
    return {k: v for k, v in numbers.items() if math.isfinite(v)}


def event_record(plan: RolloutPlan, state: RolloutState, decision: Decision, reason: str) -> dict[str, Any]:
    """The hub event stored with a state change: the last transition and the decision that made it."""
    last = state.history[-1]
    return {
        "rollout_id": plan.rollout_id, "candidate": plan.candidate, "incumbent": plan.incumbent,
        "action": last.action, "actor": last.actor, "from_stage": last.from_stage, "to_stage": last.to_stage,
        "status": state.status, "decision": decision.kind, "reason": reason,
        "numbers": finite(decision.numbers),
        "yardstick": None if decision.yardstick is None else decision.yardstick.to_dict(),
        "estimate": None if decision.estimate is None else decision.estimate.to_dict(),
    }


def registry_move(rollout: Rollout, decision: Decision) -> RegistryMove:
    """The candidate's registry status after `decision` (carried by `rollout`'s state) and its audit row."""
    state = rollout.state
    last = state.history[-1]
    details: dict[str, Any] = {
        "rollout_id": rollout.id, "decision": decision.kind, "stage": decision.stage,
        "numbers": finite(decision.numbers),
    }
    if decision.yardstick is not None:
        details["yardstick"] = decision.yardstick.to_dict()
    if decision.estimate is not None:
        details["estimate"] = decision.estimate.to_dict()
    reason = f"{last.reason}: {rollout.row.reason}" if last.action == "start" else last.reason
    # a rollback for failed downloads only says nothing about the model: it stays a candidate, to be retried
    rolled_back = "candidate" if infra_failure(decision) else "rolled_back"
    status = {"completed": "active", "rolled_back": rolled_back, "aborted": "candidate"}.get(
        state.status, STAGE_STATUS[state.stage])
    if state.status == "rolled_back" and rolled_back == "candidate":
        details["infrastructure_failure"] = True
    return RegistryMove(status, last.actor, f"rollout_{last.action}", reason, details)


def settled_by(newest: RolloutRow | None, version: str) -> str | None:
    """The newest rollout's id if it ended with the fleet on `version` (its id names the assignment, so a device
    sees one assignment whichever path sent it); None otherwise (no rollout, one running, another version)."""
    if newest is None or newest.status == "running":
        return None
    return newest.id if (newest.candidate if newest.status == "completed" else newest.incumbent) == version else None


def msg_id(rollout_id: str | None, version: str, mode: str) -> str:
    """One msg_id per (rollout, version, mode): a re-sent assignment is recognisably the same one, so a device
    that refused it reports that once, not after every resync (``registry`` when no rollout names it)."""
    return f"{rollout_id or 'registry'}/{version}/{mode}"
