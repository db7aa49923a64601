"""The way back, decided without I/O: which version a revert returns the fleet to, and whether a rolled-back
rollout may be retried.

- **Revert**: after a rollout completed, an operator returns the fleet to the version it replaced, by a new
  staged rollout of that (retired) version over the current one. The target is the incumbent of the newest
  completed rollout that put the current active version on the fleet.
- **Retry**: a rollout rolled back because devices could not *fetch* the candidate (the artifact URL was
  unreachable, the hub down…) says nothing about the model. Such a rollback is an infrastructure failure
  (`infra_failure`): the candidate stays a ``candidate`` and the rollout can be retried. A rollback for the
  model's health (a refused or failed health check, NaN scores, an anomaly rate off the control, a timeout,
  an operator's decision) cannot.
"""

from __future__ import annotations

from collections.abc import Sequence

from hub.rollout.state import SYSTEM, Decision, RolloutState
from hub.store.rows import RolloutRow

FETCH_PREFIX = "fetch:"
"""How an agent's refusal names a failed download (`agent.models.prepare`: ``fetch: GET … failed``)."""


def fetch_failure(detail: str | None) -> bool:
    """Whether a device's refusal detail says it could not download the artifact.

    >>> fetch_failure("fetch: GET http://hub:8000/models/v2/artifact failed after 0 bytes: refused")
    True
    >>> fetch_failure("verify: bad sha256")
    False
    """
    return bool(detail) and str(detail).startswith(FETCH_PREFIX)


def infra_failure(decision: Decision | None) -> bool:
    """Whether a rollback decision came only from devices that could not fetch the candidate (its numbers count
    ``failures`` and ``infra_failures``, `hub.rollout.health.assess`)."""
    if decision is None or decision.kind != "rollback":
        return False
    failures = decision.numbers.get("failures", 0.0)
    return failures > 0 and decision.numbers.get("infra_failures", 0.0) == failures


def retry_refusal(state: RolloutState, decision: Decision | None) -> str | None:
    """Why a rollout may not be retried; None when it may: the machine rolled it back for fetch failures only."""
    if state.status != "rolled_back":
        return f"rollout {state.rollout_id} is {state.status.replace('_', ' ')}: only a rolled-back rollout is retried"
    last = state.history[-1]
    if last.actor != SYSTEM or last.action != "rollback" or not infra_failure(decision):
        return (f"rollout {state.rollout_id} was rolled back for the candidate's health, not an infrastructure "
                f"failure ({last.action} by {last.actor}: {last.reason}): it is not retried")
    return None


def revert_target(rollouts: Sequence[RolloutRow], active: str | None) -> tuple[str, str] | str:
    """(version to return to, the rollout that replaced it) from `rollouts` (newest first), or why there is none."""
    if active is None:
        return "no active version: nothing to revert from"
    for r in rollouts:
        if r.status == "running":
            return f"rollout {r.id} of {r.candidate} is running: roll it back or abort it instead"
        if r.status == "completed" and r.candidate == active:
            return r.incumbent, r.id
    return f"no completed rollout put {active} on the fleet: nothing to revert to"
