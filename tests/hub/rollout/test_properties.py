"""Laws of the rollout machine over random evidence and random operator actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from hub.rollout import (
    Decision,
    Evidence,
    HealthLimits,
    RolloutError,
    RolloutPlan,
    RolloutState,
    Scoring,
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

FLEET = {"a1": "a", "a2": "a", "a3": "a", "b1": "b", "b2": "b", "c1": "c"}
POLICY = StagePolicy(min_duration_s=100, min_windows=20, timeout_s=1000)
HIST = (50, 30, 15, 5)
OK = Scoring(100, 2, latency_p99_ms=1.0, score_hist=HIST)
KINDS: dict[str, Evidence | None] = {
    "healthy": Evidence(loaded=True, candidate=OK, incumbent=OK),
    "control_only": Evidence(incumbent=OK),
    "loaded_only": Evidence(loaded=True),
    "silent": None,
    "nan": Evidence(loaded=True, candidate=Scoring(100, 2, nan_scores=1, score_hist=HIST)),
    "refused": Evidence(refused=True),
    "noisy": Evidence(loaded=True, candidate=Scoring(100, 60, score_hist=(5, 15, 30, 50)), incumbent=OK),
    "slow": Evidence(loaded=True, candidate=Scoring(100, 2, latency_p99_ms=99.0, score_hist=HIST)),
}
ACTIONS: dict[str, Callable[..., tuple[RolloutState, Decision]]] = {
    "pause": pause,
    "resume": resume,
    "promote": promote,
    "rollback": rollback,
    "abort": abort,
}
kinds = st.sampled_from(["healthy"] * 30 + sorted(KINDS))
evidence = st.fixed_dictionaries({d: kinds for d in FLEET}).map(
    lambda m: {d: e for d, k in m.items() if (e := KINDS[k]) is not None}
)
steps = st.lists(
    st.tuples(st.sampled_from(["tick"] * 4 + sorted(ACTIONS)), st.integers(0, 600).map(float), evidence),
    max_size=25,
)


CANARIES: list[float | list[str]] = [0.2, 0.5, ["b1"], ["a1", "c1"]]
SHADOWS: list[bool | float | list[str]] = [False, True, 0.5, ["c1"]]


@st.composite
def plans(draw: st.DrawFn) -> RolloutPlan:
    return plan_rollout(
        FLEET,
        rollout_id="r",
        candidate="new",
        incumbent="old",
        seed=draw(st.integers(0, 1000)),
        canary=draw(st.sampled_from(CANARIES)),
        shadow=draw(st.sampled_from(SHADOWS)),
        policies={"shadow": POLICY, "canary": POLICY, "fleet": POLICY},
        limits=HealthLimits(min_rate_windows=50),
    )


def _serving(plan: RolloutPlan, serving: dict[str, tuple[str, str]], decision: Decision) -> None:
    for c in decision.commands:
        for d in c.devices:
            serving[d] = (c.version, c.mode)


@settings(max_examples=300, deadline=None)
@given(plans(), steps)
def test_random_runs_keep_the_laws(plan: RolloutPlan, script: list[tuple[str, float, dict[str, Evidence]]]) -> None:
    now = 0.0
    state, decision = start(plan, now)
    serving = dict.fromkeys(plan.fleet, ("old", "active"))
    _serving(plan, serving, decision)
    for action, dt, ev in script:
        now += dt
        before = state
        try:
            if action == "tick":
                state, decision = next_step(plan, state, ev, now)
            else:
                state, decision = ACTIONS[action](plan, state, now, "op", "because")
        except RolloutError:
            state = before
        else:
            assert not before.terminal, "a finished rollout moved"
            assert decision.stage == state.stage and decision.at == now
            event(f"{action} → {decision.kind} ({state.stage})")
            _serving(plan, serving, decision)
            if action == "tick" and decision.kind in ("advance", "complete"):
                _advanced_on_evidence(plan, before, ev, now)
        # the candidate runs only inside the current stage, in that stage's mode
        on_candidate = {d for d, (v, _) in serving.items() if v == "new"}
        if state.status == "running":
            stage = plan.stage(state.stage)
            assert on_candidate == set(stage.devices)
            assert {serving[d][1] for d in on_candidate} == {stage.mode}
        elif state.status == "completed":
            assert on_candidate == set(plan.fleet)
        else:
            assert on_candidate == set()
        times = [t.at for t in state.history]
        assert times == sorted(times) and state.history[: len(before.history)] == before.history
        assert RolloutState.from_dict(state.to_dict()) == state


def _advanced_on_evidence(plan: RolloutPlan, before: RolloutState, ev: dict[str, Evidence], now: float) -> None:
    stage = plan.stage(before.stage)
    assert before.stage_elapsed(now) >= stage.policy.min_duration_s and not before.paused
    for d in stage.devices:
        e = ev[d]
        assert e.loaded and e.candidate is not None and e.candidate.windows >= stage.policy.min_windows
        assert not (e.refused or e.health_failed or e.rolled_back or e.candidate.nan_scores)


@settings(max_examples=100, deadline=None)
@given(plans(), st.sampled_from(sorted(ACTIONS)), evidence)
def test_a_terminal_state_never_moves(plan: RolloutPlan, how: str, ev: dict[str, Evidence]) -> None:
    state, _ = start(plan, 0.0)
    state, _ = (rollback if how != "abort" else abort)(plan, state, 1.0, "op", "")
    args: list[tuple[Any, ...]] = [(plan, state, ev, 2.0)] + [(plan, state, 2.0, "op", "")] * len(ACTIONS)
    for fn, a in zip([next_step, *ACTIONS.values()], args, strict=True):
        try:
            fn(*a)
        except RolloutError:
            continue
        raise AssertionError(f"{fn.__name__} moved a {state.status} rollout")
