"""Golden scenarios of the rollout machine: exact decisions for seeded plans and scripted evidence."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hub.rollout import (
    Command,
    Decision,
    Evidence,
    RolloutError,
    RolloutPlan,
    RolloutState,
    Scoring,
    next_step,
    start,
)
from tests.hub.rollout.factories import POLICIES, SHAPE, T0, evidence, make_plan, scoring

CANARY = ("fan-2", "press-1", "pump-4")
REST = ("fan-1", "fan-3", "press-2", "pump-1", "pump-2", "pump-3", "pump-5")
ALL = tuple(sorted(CANARY + REST))


def _candidate_devices(decisions: list[Decision]) -> set[str]:
    return {d for dec in decisions for c in dec.commands if c.version == "v2" for d in c.devices}


def test_plan_of_the_scenarios() -> None:
    plan = make_plan()
    assert [(s.name, s.devices, s.mode) for s in plan.stages] == [
        ("shadow", CANARY, "shadow"),
        ("canary", CANARY, "active"),
        ("fleet", ALL, "active"),
    ]


def test_happy_path_shadow_canary_fleet_completed() -> None:
    plan = make_plan()
    state, d0 = start(plan, T0)
    assert d0 == Decision(
        "assign",
        "rollout of v2 over v1 started at the shadow stage",
        "shadow",
        T0,
        (Command("assign", CANARY, "v2", "shadow"),),
    )

    state, d1 = next_step(plan, state, evidence(plan, "shadow"), T0 + 300)
    assert (d1.kind, d1.reason, d1.commands) == ("wait", "watched 300 s of 600 s", ())
    assert d1.numbers["disagreement_rate"] == 0.01 and d1.numbers["score_psi"] == 0.0

    state, d2 = next_step(plan, state, evidence(plan, "shadow"), T0 + 600)
    assert d2.kind == "advance" and d2.stage == state.stage == "canary"
    assert d2.reason == "shadow healthy on 3 devices after 600 s: on to canary"
    assert d2.commands == (Command("assign", CANARY, "v2", "active"),)

    partial = evidence(plan, "canary", silent=["press-1"])
    state, d3 = next_step(plan, state, partial, T0 + 2000)
    assert d3.kind == "wait"
    assert d3.reason == "2 of 3 devices loaded the candidate and scored 100 windows, need 3 (1 silent)"
    assert [(s.device_id, s.loaded, s.windows) for s in state.devices] == [
        ("fan-2", True, 200),
        ("press-1", False, 0),
        ("pump-4", True, 200),
    ]

    state, d4 = next_step(plan, state, evidence(plan, "canary"), T0 + 2000)
    assert (d4.kind, d4.commands) == ("advance", (Command("assign", REST, "v2", "active"),))
    assert d4.numbers["anomaly_rate_ratio"] == 1.0 and d4.numbers["control_windows"] == 1400

    # the fleet has no device left on the incumbent: the control kept from the canary stage stands in
    fleet_ev = evidence(plan, "fleet", windows=60)
    state, d5 = next_step(plan, state, fleet_ev, T0 + 2300)
    assert (d5.kind, d5.reason) == ("wait", "watched 300 s of 600 s")
    state, d6 = next_step(plan, state, fleet_ev, T0 + 2600)
    assert (d6.kind, d6.stage, d6.commands) == ("complete", "fleet", ())
    assert d6.reason == "fleet healthy on 10 devices after 600 s: rollout complete"
    assert state.status == "completed" and state.terminal

    assert [(t.at, t.actor, t.action, t.to_stage, t.status) for t in state.history] == [
        (T0, "system", "start", "shadow", "running"),
        (T0 + 600, "system", "advance", "canary", "running"),
        (T0 + 2000, "system", "advance", "fleet", "running"),
        (T0 + 2600, "system", "complete", "fleet", "completed"),
    ]
    with pytest.raises(RolloutError, match="is completed"):
        next_step(plan, state, fleet_ev, T0 + 3000)


def _to_canary() -> tuple[RolloutPlan, RolloutState, list[Decision]]:
    plan = make_plan()
    state, d0 = start(plan, T0)
    state, d1 = next_step(plan, state, evidence(plan, "shadow"), T0 + 600)
    assert state.stage == "canary"
    return plan, state, [d0, d1]


def test_nan_on_a_canary_device_rolls_back_the_canary_only() -> None:
    plan, state, decisions = _to_canary()
    state, d = next_step(plan, state, evidence(plan, "canary", windows=20), T0 + 700)
    decisions.append(d)
    assert d.kind == "wait"
    bad = {"press-1": Evidence(loaded=True, candidate=scoring(40, nan=3))}
    state, d = next_step(plan, state, evidence(plan, "canary", windows=40, override=bad), T0 + 800)
    decisions.append(d)
    assert d.kind == "rollback" and d.reason == "canary failed: press-1: 3 NaN scores"
    assert d.commands == (Command("rollback", CANARY, "v1", "active"),)
    assert state.status == "rolled_back" and state.history[-1].action == "rollback"
    assert _candidate_devices(decisions) == set(CANARY)  # the rest of the fleet never received it
    assert state.devices[1].problem == "3 NaN scores"


def test_a_silent_canary_times_out_and_rolls_back() -> None:
    plan, state, _ = _to_canary()
    quiet = evidence(plan, "canary", silent=CANARY)
    state, d = next_step(plan, state, quiet, T0 + 600 + 7199)
    assert d.kind == "wait" and "0 of 3 devices" in d.reason and "(3 silent)" in d.reason
    state, d = next_step(plan, state, quiet, T0 + 600 + 7200)
    assert d.kind == "rollback" and d.reason.startswith("canary timed out after 7200 s: 0 of 3 devices")
    assert d.commands == (Command("rollback", CANARY, "v1", "active"),)
    assert state.history[-1].action == "timeout" and state.status == "rolled_back"


@pytest.mark.parametrize(
    ("device_ev", "reason"),
    [
        (Evidence(refused=True, detail="bad signature"), "pump-4: refused the candidate (bad signature)"),
        (Evidence(loaded=True, health_failed=True), "pump-4: failed the candidate's health check"),
        (Evidence(loaded=True, rolled_back=True), "pump-4: rolled the candidate back itself"),
        (Evidence(loaded=True, candidate=scoring(200, errors=2)), "pump-4: 2 inference errors in 200 windows"),
    ],
)
def test_device_failures_roll_back(device_ev: Evidence, reason: str) -> None:
    plan, state, _ = _to_canary()
    state, d = next_step(plan, state, evidence(plan, "canary", override={"pump-4": device_ev}), T0 + 700)
    assert d.kind == "rollback" and d.reason == f"canary failed: {reason}"


def test_anomaly_rate_way_off_rolls_back_somewhat_off_holds() -> None:
    plan, state, _ = _to_canary()
    noisy = {d: Evidence(loaded=True, candidate=scoring(200, rate=0.2)) for d in CANARY}
    _, d = next_step(plan, state, evidence(plan, "canary", override=noisy), T0 + 700)
    assert d.kind == "rollback" and "anomaly rate 0.2000 vs control 0.0200 (×8.20): beyond ×5" in d.reason
    jumpy = {d: Evidence(loaded=True, candidate=scoring(200, rate=0.05)) for d in CANARY}
    _, d = next_step(plan, state, evidence(plan, "canary", override=jumpy), T0 + 2000)
    assert d.kind == "wait" and d.reason == "anomaly rate 0.0500 vs control 0.0200 (×2.20): beyond ×2"


def test_a_shifted_score_distribution_holds_and_slow_devices_hold() -> None:
    plan, state, _ = _to_canary()
    collapsed = {d: Evidence(loaded=True, candidate=scoring(200, shape=SHAPE[::-1])) for d in CANARY}
    _, d = next_step(plan, state, evidence(plan, "canary", override=collapsed), T0 + 2000)
    assert d.kind == "wait" and d.reason.startswith("score distribution PSI") and d.numbers["score_psi"] > 1
    slow = {"fan-2": Evidence(loaded=True, candidate=scoring(200, latency=35.0))}
    state, d = next_step(plan, state, evidence(plan, "canary", override=slow), T0 + 2000)
    assert d.reason == "1 devices over the 20 ms p99 budget (worst 35 ms)"
    assert state.devices[0].problem == "p99 latency 35 ms over 20 ms"


def test_shadow_disagreement_holds() -> None:
    plan = make_plan()
    state, _ = start(plan, T0)
    ev = evidence(plan, "shadow")
    ev = {k: replace(v, disagreements=30) if v.loaded else v for k, v in ev.items()}
    _, d = next_step(plan, state, ev, T0 + 600)
    assert d.kind == "wait" and d.reason == "shadow disagreement 0.150 over 0.05"


def test_too_little_control_holds() -> None:
    plan, state, _ = _to_canary()
    ev = evidence(plan, "canary")
    ev = {k: v for k, v in ev.items() if v.loaded}  # nobody reports the incumbent, and no control kept
    state = replace(state, control=None)
    _, d = next_step(plan, state, ev, T0 + 2000)
    assert d.reason == "too few windows to compare with the control: candidate 600, control 0, need 100 each"
    baseline = make_plan(baseline=Scoring(10_000, 200, score_hist=tuple(round(10_000 * p) for p in SHAPE)))
    _, d = next_step(baseline, state, ev, T0 + 2000)
    assert d.kind == "advance"


def test_evidence_outside_the_stage_never_advances_it() -> None:
    plan, state, _ = _to_canary()
    ev = evidence(plan, "canary", silent=CANARY)
    ev |= {d: Evidence(loaded=True, candidate=scoring(500)) for d in ("fan-1", "pump-1", "pump-2")}
    _, d = next_step(plan, state, ev, T0 + 5000)
    assert d.kind == "wait" and d.reason.startswith("0 of 3 devices")


def test_min_reporting_lets_a_fleet_stage_finish_without_stragglers() -> None:
    policies = {**POLICIES, "fleet": replace(POLICIES["fleet"], min_reporting=0.8)}
    plan = make_plan(shadow=False, canary=["pump-1"], policies=policies)
    state, _ = start(plan, T0)
    state, d = next_step(plan, state, evidence(plan, "canary"), T0 + 1200)
    assert d.kind == "advance"
    state, d = next_step(plan, state, evidence(plan, "fleet", silent=["fan-1", "fan-3"]), T0 + 1800)
    assert d.kind == "complete" and d.numbers["devices_needed"] == 8


def test_guards() -> None:
    plan, state, _ = _to_canary()
    with pytest.raises(RolloutError, match="last updated"):
        next_step(plan, state, {}, T0)
    with pytest.raises(RolloutError, match="does not belong"):
        next_step(make_plan(rollout_id="r-2"), state, {}, T0 + 700)
    other: RolloutState = replace(state, stage="shadow")
    with pytest.raises(RolloutError, match="bins cannot be pooled"):
        bad = {"pump-4": Evidence(loaded=True, candidate=Scoring(10, score_hist=(1, 2)))}
        next_step(plan, other, evidence(plan, "shadow", override=bad), T0 + 700)


def test_shadow_needs_no_candidate_histogram_but_active_stages_do() -> None:
    plan = make_plan()
    state, _ = start(plan, T0)
    no_hist = {
        d: Evidence(loaded=True, candidate=replace(scoring(200), score_hist=()), incumbent=scoring(200)) for d in CANARY
    }
    state, d = next_step(plan, state, evidence(plan, "shadow", override=no_hist), T0 + 600)
    assert d.kind == "advance" and "score_psi" not in d.numbers
    no_hist = {d: replace(e, incumbent=None) for d, e in no_hist.items()}
    _, d = next_step(plan, state, evidence(plan, "canary", override=no_hist), T0 + 2000)
    assert (d.kind, d.reason) == ("wait", "no score histogram from the candidate")
