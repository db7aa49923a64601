"""Operator actions: pause, resume, promote, roll back, abort — recorded with who, when and why."""

from __future__ import annotations

import pytest

from hub.rollout import (
    Command,
    Evidence,
    RolloutError,
    abort,
    next_step,
    pause,
    promote,
    resume,
    rollback,
    start,
)
from tests.hub.rollout.factories import T0, evidence, make_plan, scoring

ALL = ("fan-1", "fan-2", "fan-3", "press-1", "press-2", "pump-1", "pump-2", "pump-3", "pump-4", "pump-5")
CANARY = ("fan-2", "press-1", "pump-4")


def test_pause_blocks_advancing_until_resume() -> None:
    plan = make_plan()
    state, _ = start(plan, T0)
    ev = evidence(plan, "shadow")
    state, d = pause(plan, state, T0 + 100, "alice", "checking the pump-4 gateway")
    assert (d.kind, d.reason) == ("wait", "paused by alice: checking the pump-4 gateway")
    state, d = next_step(plan, state, ev, T0 + 5000)  # healthy and past the timeout: neither advances nor times out
    assert (d.kind, d.reason) == ("wait", "paused; watched 100 s of 600 s") and state.paused
    state, d = resume(plan, state, T0 + 5100, "bob", "")
    assert d.reason == "resumed by bob" and state.paused_s == 5000 and not state.paused
    state, d = next_step(plan, state, ev, T0 + 5200)
    assert (d.kind, d.reason) == ("wait", "watched 200 s of 600 s")  # 100 s before the pause, 100 after
    state, d = next_step(plan, state, ev, T0 + 5600)
    assert d.kind == "advance" and state.stage == "canary"
    assert [(t.actor, t.action) for t in state.history] == [
        ("system", "start"),
        ("alice", "pause"),
        ("bob", "resume"),
        ("system", "advance"),
    ]


def test_failures_still_roll_back_while_paused() -> None:
    plan = make_plan()
    state, _ = start(plan, T0)
    state, _ = pause(plan, state, T0 + 10, "alice", "")
    bad = {"pump-4": Evidence(loaded=True, candidate=scoring(10, nan=1))}
    state, d = next_step(plan, state, evidence(plan, "shadow", override=bad), T0 + 20)
    assert d.kind == "rollback" and state.status == "rolled_back" and not state.paused


def test_promote_skips_waiting() -> None:
    plan = make_plan()
    state, _ = start(plan, T0)
    state, d = promote(plan, state, T0 + 1, "alice", "shadow looked fine on the bench")
    assert (d.kind, d.stage, d.commands) == ("advance", "canary", (Command("assign", CANARY, "v2", "active"),))
    state, d = promote(plan, state, T0 + 2, "alice", "")
    assert d.kind == "advance" and state.stage == "fleet" and len(d.commands[0].devices) == 7
    state, d = promote(plan, state, T0 + 3, "alice", "")
    assert (d.kind, d.commands, state.status) == ("complete", (), "completed")
    assert [(t.at, t.actor, t.action, t.to_stage) for t in state.history[1:]] == [
        (T0 + 1, "alice", "promote", "canary"),
        (T0 + 2, "alice", "promote", "fleet"),
        (T0 + 3, "alice", "promote", "fleet"),
    ]
    assert state.history[1].reason == "promoted by alice: shadow looked fine on the bench"


def test_manual_rollback_from_fleet_returns_every_device() -> None:
    plan = make_plan()
    state, _ = start(plan, T0)
    state, _ = promote(plan, state, T0 + 1, "alice", "")
    state, _ = promote(plan, state, T0 + 2, "alice", "")
    state, d = rollback(plan, state, T0 + 3, "carol", "complaints from the south site")
    assert d.kind == "rollback" and d.commands == (Command("rollback", ALL, "v1", "active"),)
    assert d.reason == "rolled back by carol: complaints from the south site"
    assert state.status == "rolled_back" and state.history[-1].actor == "carol"


def test_rollback_from_shadow_ends_the_shadow_without_a_device_rollback() -> None:
    plan = make_plan()
    state, _ = start(plan, T0)
    state, d = rollback(plan, state, T0 + 3, "carol", "")
    assert d.kind == "rollback" and d.commands == (Command("assign", CANARY, "v1", "active"),)


def test_abort_returns_devices_and_says_aborted() -> None:
    plan = make_plan()
    state, _ = start(plan, T0)
    state, d = abort(plan, state, T0 + 3, "dave", "superseded by v3")
    assert (d.kind, state.status, d.commands) == ("abort", "aborted", (Command("assign", CANARY, "v1", "active"),))


def test_invalid_transitions_raise() -> None:
    plan = make_plan()
    state, _ = start(plan, T0)
    with pytest.raises(RolloutError, match="not paused"):
        resume(plan, state, T0 + 1, "alice", "")
    paused, _ = pause(plan, state, T0 + 1, "alice", "")
    with pytest.raises(RolloutError, match="already paused"):
        pause(plan, paused, T0 + 2, "alice", "")
    with pytest.raises(RolloutError, match="resume it before promoting"):
        promote(plan, paused, T0 + 2, "alice", "")
    with pytest.raises(RolloutError, match="needs an actor"):
        rollback(plan, state, T0 + 2, "", "")
    done, _ = rollback(plan, state, T0 + 2, "alice", "")
    for action in (pause, resume, promote, rollback, abort):
        with pytest.raises(RolloutError, match="rolled back"):
            action(plan, done, T0 + 3, "alice", "")
    with pytest.raises(RolloutError, match="last updated"):
        pause(plan, state, T0 - 1, "alice", "")
