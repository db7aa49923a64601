"""Building blocks shared by the machine and the operator actions: assignments, moves, endings, guards."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import replace

from hub.rollout.errors import RolloutError
from hub.rollout.evidence import DeviceSummary, Yardstick
from hub.rollout.plan import Mode, RolloutPlan, StageName
from hub.rollout.state import Action, Command, Decision, DecisionKind, RolloutState, Status, Transition

MAX_REASONS = 5
"""A decision's reason names at most this many problems, then counts the rest."""


def assignment(plan: RolloutPlan, stage: StageName | None) -> dict[str, tuple[str, Mode]]:
    """What every fleet device serves during `stage` (None: before the rollout, or after it rolled back)."""
    inside = set(plan.stage(stage).devices) if stage is not None else set()
    mode = plan.stage(stage).mode if stage is not None else "active"
    return {d: (plan.candidate, mode) if d in inside else (plan.incumbent, "active") for d in plan.fleet}


def assign_commands(plan: RolloutPlan, before: StageName | None, after: StageName) -> tuple[Command, ...]:
    """Assign commands for the devices whose (version, mode) changes between two stages: incumbent first."""
    old, new = assignment(plan, before), assignment(plan, after)
    groups: dict[tuple[str, Mode], list[str]] = defaultdict(list)
    for device, target in new.items():
        if old[device] != target:
            groups[target].append(device)
    order = sorted(groups, key=lambda t: (t[0] != plan.incumbent, t[1]))
    return tuple(Command("assign", tuple(sorted(groups[t])), t[0], t[1]) for t in order)


def rollback_command(plan: RolloutPlan, stage: StageName) -> Command:
    """Return every device holding the candidate during `stage` to the incumbent.

    Devices that only shadowed the candidate still serve the incumbent: assigning it ends the shadow, and
    a device ``rollback`` (back to its *previous* version) would be wrong for them.
    """
    s = plan.stage(stage)
    return Command("assign" if s.mode == "shadow" else "rollback", s.devices, plan.incumbent, "active")


def guard(plan: RolloutPlan, state: RolloutState, now: float, what: str, *, running: bool = True) -> None:
    """Refuse a step on another rollout's state, with a clock going backwards, or after the end."""
    if state.rollout_id != plan.rollout_id:
        raise RolloutError(f"state of rollout {state.rollout_id} does not belong to plan {plan.rollout_id}")
    if not math.isfinite(now) or now < state.updated_at:
        raise RolloutError(f"cannot {what} at {now}: the rollout was last updated at {state.updated_at}")
    if running and state.terminal:
        raise RolloutError(f"cannot {what}: rollout {state.rollout_id} is {state.status.replace('_', ' ')}")


def move(
    plan: RolloutPlan,
    state: RolloutState,
    now: float,
    actor: str,
    action: Action,
    reason: str,
    numbers: Mapping[str, float],
    yardstick: Yardstick | None = None,
) -> tuple[RolloutState, Decision]:
    """Advance to the next stage, or complete after the last one."""
    nxt = plan.next_stage(state.stage)
    if nxt is None:
        done = end(state, "completed", now, actor, action, reason)
        return done, Decision("complete", reason, done.stage, now, (), numbers, yardstick)
    new = replace(
        state,
        stage=nxt.name,
        entered_at=now,
        updated_at=now,
        paused_s=0.0,
        paused_at=now if state.paused else None,
        devices=tuple(DeviceSummary(d) for d in nxt.devices),
        history=(*state.history, Transition(now, actor, action, state.stage, nxt.name, "running", reason)),
    )
    commands = assign_commands(plan, state.stage, nxt.name)
    return new, Decision("advance", reason, nxt.name, now, commands, numbers, yardstick)


def back(
    plan: RolloutPlan,
    state: RolloutState,
    now: float,
    actor: str,
    action: Action,
    reason: str,
    numbers: Mapping[str, float],
    yardstick: Yardstick | None = None,
    *,
    status: Status = "rolled_back",
) -> tuple[RolloutState, Decision]:
    """End the rollout and return every device holding the candidate to the incumbent."""
    kind: DecisionKind = "abort" if status == "aborted" else "rollback"
    done = end(state, status, now, actor, action, reason)
    return done, Decision(kind, reason, done.stage, now, (rollback_command(plan, state.stage),), numbers, yardstick)


def end(state: RolloutState, status: Status, now: float, actor: str, action: Action, reason: str) -> RolloutState:
    return replace(
        state,
        status=status,
        updated_at=now,
        paused=False,
        paused_at=None,
        history=(*state.history, Transition(now, actor, action, state.stage, state.stage, status, reason)),
    )


def summarise(reasons: Iterable[str]) -> str:
    """Problems joined by ``; ``, at most MAX_REASONS of them, then how many more."""
    items = list(reasons)
    head = "; ".join(items[:MAX_REASONS])
    return head + (f"; and {len(items) - MAX_REASONS} more" if len(items) > MAX_REASONS else "")
