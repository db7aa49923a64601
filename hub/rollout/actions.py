"""Operator actions: pause, resume, promote, roll back or abort a rollout. Pure, recorded in the history.

Each takes ``(plan, state, now, actor, reason)`` and returns ``(state, decision)``; an action that makes no
sense in the current state (promoting a rolled-back rollout, resuming one that is not paused) raises
RolloutError instead of being ignored, so the operator learns at once.
"""

from __future__ import annotations

from dataclasses import replace

from hub.rollout._transitions import back, guard, move
from hub.rollout.errors import RolloutError
from hub.rollout.machine import system_paused
from hub.rollout.plan import RolloutPlan
from hub.rollout.state import Decision, RolloutState, Transition


def pause(plan: RolloutPlan, state: RolloutState, now: float, actor: str, reason: str) -> tuple[RolloutState, Decision]:
    """Stop advancing and stop the stage clock. Failures still roll back while paused."""
    guard(plan, state, now, "pause")
    if state.paused:
        raise RolloutError(f"rollout {state.rollout_id} is already paused")
    why = _why(actor, "paused", reason)
    new = replace(
        state,
        paused=True,
        paused_at=now,
        updated_at=now,
        history=(*state.history, Transition(now, actor, "pause", state.stage, state.stage, "running", why)),
    )
    return new, Decision("wait", why, state.stage, now)


def resume(
    plan: RolloutPlan, state: RolloutState, now: float, actor: str, reason: str
) -> tuple[RolloutState, Decision]:
    """Let the stage advance again; the time spent paused does not count toward its duration or timeout."""
    guard(plan, state, now, "resume")
    if not state.paused or state.paused_at is None:
        raise RolloutError(f"rollout {state.rollout_id} is not paused")
    why = _why(actor, "resumed", reason)
    new = replace(
        state,
        paused=False,
        paused_at=None,
        paused_s=state.paused_s + (now - state.paused_at),
        updated_at=now,
        history=(*state.history, Transition(now, actor, "resume", state.stage, state.stage, "running", why)),
    )
    return new, Decision("wait", why, state.stage, now)


def promote(
    plan: RolloutPlan, state: RolloutState, now: float, actor: str, reason: str
) -> tuple[RolloutState, Decision]:
    """Skip the rest of the current stage: on to the next one, or complete after the fleet stage. A rollout the
    system paused (a stage its label-free estimate alone held to the timeout) is promoted without a resume: that
    pause waits for exactly this decision."""
    guard(plan, state, now, "promote")
    if state.paused and not system_paused(state):
        raise RolloutError(f"rollout {state.rollout_id} is paused: resume it before promoting")
    if state.paused:
        state = replace(state, paused=False, paused_at=None)
    return move(plan, state, now, actor, "promote", _why(actor, "promoted", reason), {})


def rollback(
    plan: RolloutPlan, state: RolloutState, now: float, actor: str, reason: str
) -> tuple[RolloutState, Decision]:
    """Return every device holding the candidate to the incumbent, now, and end the rollout."""
    guard(plan, state, now, "roll back")
    return back(plan, state, now, actor, "rollback", _why(actor, "rolled back", reason), {})


def abort(plan: RolloutPlan, state: RolloutState, now: float, actor: str, reason: str) -> tuple[RolloutState, Decision]:
    """Stop the rollout for a reason other than the candidate's health (superseded, cancelled…).

    Devices return to the incumbent as in a rollback; the status says the candidate was not judged bad.
    """
    guard(plan, state, now, "abort")
    return back(plan, state, now, actor, "abort", _why(actor, "aborted", reason), {}, status="aborted")


def _why(actor: str, verb: str, reason: str) -> str:
    if not actor:
        raise RolloutError("an operator action needs an actor")
    return f"{verb} by {actor}" + (f": {reason}" if reason else "")
