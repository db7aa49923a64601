"""The rollout state machine: `start` a plan, then `next_step` on each batch of device evidence.

Pure: no clock, broker or database. The caller passes `now` (seconds, the same clock as message
timestamps), persists the returned state and carries out the decision's commands.

Per step, in this order: a failure on any stage device rolls the stage back at once (even while paused:
safety does not wait for an operator); a paused rollout waits; a stage with no holds left that has been
watched `min_duration_s` advances (or completes after the fleet); a stage still holding at `timeout_s`
rolls back, unless the candidate's label-free estimate is all that holds it: then the system pauses the rollout
for an operator (an estimate is the weakest evidence, and least sure under the drift that a retrain answers; the
operator promotes, which also ends that pause, or rolls back, and labels that arrive meanwhile still judge it);
otherwise wait.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from hub.rollout._transitions import assign_commands, back, guard, move, summarise
from hub.rollout.evidence import ControlTrust, DeviceSummary, Estimate, Evidence, Expectation, Yardstick
from hub.rollout.health import Assessment, assess
from hub.rollout.plan import RolloutPlan
from hub.rollout.state import SYSTEM, Decision, RolloutState, Transition


def start(plan: RolloutPlan, now: float, *, actor: str = SYSTEM) -> tuple[RolloutState, Decision]:
    """Enter the first stage: assign the candidate to its devices (in shadow mode for a shadow stage)."""
    first = plan.stages[0]
    reason = f"rollout of {plan.candidate} over {plan.incumbent} started at the {first.name} stage"
    state = RolloutState(
        rollout_id=plan.rollout_id,
        stage=first.name,
        status="running",
        started_at=now,
        entered_at=now,
        updated_at=now,
        devices=tuple(DeviceSummary(d) for d in first.devices),
        history=(Transition(now, actor, "start", first.name, first.name, "running", reason),),
    )
    guard(plan, state, now, "start")
    return state, Decision("assign", reason, first.name, now, assign_commands(plan, None, first.name))


def next_step(
    plan: RolloutPlan,
    state: RolloutState,
    evidence: Mapping[str, Evidence],
    now: float,
    *,
    trust: ControlTrust | None = None,
    expectation: Expectation | None = None,
    estimate: Estimate | None = None,
) -> tuple[RolloutState, Decision]:
    """Judge the current stage on `evidence` (per device, counted since the stage began) and decide.

    `trust` is the hub's verdict on the control (None: trusted); an untrusted control makes the candidate's
    `expectation` the yardstick: the one given (its scores on the stage's traffic, `hub.rollout.traffic`), else
    the plan's (its manifest reference; see `hub.rollout.health`). `estimate`, the candidate's label-free figures on
    the stage's traffic, is recorded in the decision and may hold the stage. Raises RolloutError on a finished rollout,
    another rollout's state, or `now` before the last update.
    """
    guard(plan, state, now, "step")
    a = assess(plan.stage(state.stage), plan.limits, evidence, state.control or plan.baseline, trust=trust,
               expectation=expectation or plan.expectation, estimate=estimate)
    new, decision = _decide(plan, state, a, now)
    return new, replace(decision, estimate=a.estimate)


def _decide(plan: RolloutPlan, state: RolloutState, a: Assessment, now: float) -> tuple[RolloutState, Decision]:
    stage = plan.stage(state.stage)
    policy = stage.policy
    ys = a.yardstick
    elapsed = state.stage_elapsed(now)
    numbers = {
        **a.numbers,
        "elapsed_s": elapsed,
        "min_duration_s": policy.min_duration_s,
        "timeout_s": policy.timeout_s,
    }
    state = replace(state, devices=a.devices, control=a.control or state.control, updated_at=now)

    if a.failures:
        return back(plan, state, now, SYSTEM, "rollback", f"{stage.name} failed: {summarise(a.failures)}", numbers, ys)
    holds = list(a.holds)
    if elapsed < policy.min_duration_s:
        holds.append(f"watched {elapsed:.0f} s of {policy.min_duration_s:.0f} s")
    if state.paused:
        why = "paused" + (f"; {summarise(holds)}" if holds else "")
        return state, Decision("wait", why, stage.name, now, numbers=numbers, yardstick=ys)
    if not holds:
        nxt = plan.next_stage(stage.name)
        reason = f"{stage.name} healthy on {a.numbers['devices_ready']:.0f} devices after {elapsed:.0f} s" + (
            f": on to {nxt.name}" if nxt else ": rollout complete"
        )
        return move(plan, state, now, SYSTEM, "advance" if nxt else "complete", reason, numbers, ys)
    if elapsed >= policy.timeout_s:
        if set(holds) <= set(a.label_free_holds):
            return estimate_pause(state, now, f"{stage.name} still held at its {policy.timeout_s:.0f} s timeout "
                                  f"by the label-free estimate alone ({summarise(holds)}): paused for an operator "
                                  "to promote or roll back", numbers, ys)
        reason = f"{stage.name} timed out after {elapsed:.0f} s: {summarise(holds)}"
        return back(plan, state, now, SYSTEM, "timeout", reason, numbers, ys)
    return state, Decision("wait", summarise(holds), stage.name, now, numbers=numbers, yardstick=ys)


def estimate_pause(state: RolloutState, now: float, reason: str, numbers: Mapping[str, float],
                   ys: Yardstick | None) -> tuple[RolloutState, Decision]:
    """The system's pause of a stage its label-free estimate alone held to the timeout (`system_paused`)."""
    new = replace(state, paused=True, paused_at=now, updated_at=now,
                  history=(*state.history, Transition(now, SYSTEM, "pause", state.stage, state.stage, "running",
                                                      reason)))
    return new, Decision("wait", reason, state.stage, now, numbers=numbers, yardstick=ys)


def system_paused(state: RolloutState) -> bool:
    """Paused by the system (`estimate_pause`), not by an operator: the last pause in the history is the system's."""
    pauses = [t for t in state.history if t.action == "pause"]
    return state.paused and bool(pauses) and pauses[-1].actor == SYSTEM

