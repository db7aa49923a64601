"""The candidate's label-free estimate on the stage's traffic as rollout evidence: recorded in every judged decision,
holding (never failing) a stage whose estimated recall or F1 falls far below its gate-time figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hub.app.render import rollout_text
from hub.rollout import Decision, Estimate, HealthLimits, RolloutPlan, RolloutState, next_step, start
from hub.rollout.actions import pause, promote, rollback
from hub.rollout.errors import RolloutError
from hub.rollout.health import gate_f1_on
from hub.rollout.machine import system_paused
from hub.rollout.state import SYSTEM
from hub.rollout.traffic import Served, estimate_on_traffic
from shared.manifest import Calibration
from tests.hub.rollout.factories import LIMITS, T0, evidence, make_plan

IDENTITY = Calibration(x=[0.0, 1.0], y=[0.0, 1.0], fitted_on="eval", n=400, n_positive=80)
AFTER = T0 + 1200  # the canary's min_duration_s


def good(**kwargs: float) -> Estimate:
    """What a candidate that does on the canary's traffic what it did at its gate looks like."""
    values = {"recall": 0.82, "precision": 0.7, "false_alarm_rate": 0.03, "f1": 0.75, "failure_share": 0.1,
              "gate_recall": 0.85, "gate_false_alarm_rate": 0.03, **kwargs}
    return Estimate("ok", "on 240 vectors (60 of the random slice) of the stage's traffic", source="stage",
                    vectors=240, samples=60, calibrated_on="eval", **values)


def canary(estimate: Estimate | None, now: float = AFTER, **limits: float) -> Decision:
    plan = make_plan(shadow=False, limits=HealthLimits(**{**LIMITS.to_dict(), **limits}))  # type: ignore[arg-type]
    state, _ = start(plan, T0)
    return next_step(plan, state, evidence(plan, "canary"), now, estimate=estimate)[1]


def test_the_estimate_weighs_the_strata_and_says_why_when_there_is_none() -> None:
    # v2 alarmed on 20 of 200 windows (10 vectors held); 40 random quiet vectors stand for the other 180
    v2 = Served("v2", 200, 20, np.full(10, 0.8), np.array([0.1] * 30 + [0.3] * 8 + [0.6] * 2), alarm_random=1)
    e = estimate_on_traffic([v2], IDENTITY, 0.5, "stage", min_samples=40)
    w = 180 / 40  # each quiet vector stands for 4.5 windows
    tp, fp = 20 * 0.8 + w * 2 * 0.6, 20 * 0.2 + w * 2 * 0.4
    fn, tn = w * (30 * 0.1 + 8 * 0.3), w * (30 * 0.9 + 8 * 0.7)
    assert e.status == "ok" and (e.source, e.vectors, e.samples, e.calibrated_on) == ("stage", 50, 41, "eval")
    assert e.recall == pytest.approx(tp / (tp + fn)) and e.false_alarm_rate == pytest.approx(fp / (fp + tn))
    assert e.precision == pytest.approx(tp / (tp + fp)) and e.f1 == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert e.failure_share == pytest.approx((tp + fn) / 200)
    assert estimate_on_traffic([v2], None, 0.5, "stage", min_samples=40).status == "no_calibration"
    few = estimate_on_traffic([v2], IDENTITY, 0.5, "fleet", min_samples=42)
    assert few.status == "too_few_samples" and few.recall is None and "need 42 of the random slice" in few.reason
    healthy = Served("v2", 200, 0, np.empty(0), np.full(60, 0.02))  # 1.2 failures expected among 60 vectors
    assert estimate_on_traffic([healthy], IDENTITY, 0.5, "stage", min_samples=40).status == "too_few_failures"


def test_an_estimate_near_the_gate_lets_the_canary_advance_and_is_recorded() -> None:
    d = canary(good())
    assert d.kind == "advance", d.reason
    assert d.estimate == good()
    assert d.numbers["estimated_recall"] == 0.82 and d.numbers["gate_recall"] == 0.85
    assert d.numbers["gate_f1_on_traffic"] == pytest.approx(gate_f1_on(0.1, 0.85, 0.03))
    assert Decision.from_dict(json.loads(json.dumps(d.to_dict()))) == d


@pytest.mark.parametrize(("low", "why"), [
    ({"recall": 0.3}, "recall 0.300 vs 0.850 at the gate"),
    # F1 against what the gate's recall and false-alarm rate give at this traffic's share of failures (0.802)
    ({"f1": 0.5}, "F1 0.500 vs 0.802 at the gate's recall and false-alarm rate on it"),
])
def test_an_estimate_far_below_the_gate_holds_the_stage_but_never_rolls_it_back(low: dict[str, float],
                                                                                why: str) -> None:
    d = canary(good(**low))
    assert d.kind == "wait" and why in d.reason and "more than 0.2 below" in d.reason
    assert d.estimate is not None and d.numbers["failures"] == 0
    assert canary(good(**low), estimate_max_drop=0.6).kind == "advance"  # the named limit decides
    # even a candidate estimated to catch nothing is only held, and at the stage's timeout paused for an operator
    assert canary(good(recall=0.0, f1=0.0)).kind == "wait"
    assert canary(good(recall=0.0, f1=0.0), now=T0 + 7200).kind == "wait"


def _held_to_the_timeout(**estimate: float) -> tuple[RolloutPlan, RolloutState, Decision]:
    plan = make_plan(shadow=False)
    state, _ = start(plan, T0)
    state, d = next_step(plan, state, evidence(plan, "canary"), AFTER, estimate=good(**estimate))
    assert d.kind == "wait" and not state.paused
    state, d = next_step(plan, state, evidence(plan, "canary"), T0 + 7200, estimate=good(**estimate))
    return plan, state, d


def test_a_stage_held_by_the_estimate_alone_is_paused_at_its_timeout_for_an_operator() -> None:
    """An estimate is the weakest evidence, and least sure under the covariate drift that rollouts follow: held by
    it alone to the timeout, the stage waits for an operator; promoting ends that pause, a rollback ends it too."""
    plan, state, d = _held_to_the_timeout(recall=0.3)
    assert state.paused and system_paused(state) and state.status == "running"
    assert "by the label-free estimate alone" in d.reason and "paused for an operator" in d.reason
    assert state.history[-1].actor == SYSTEM and state.history[-1].action == "pause"
    # while paused the system keeps waiting (failures would still roll back)
    later, again = next_step(plan, state, evidence(plan, "canary"), T0 + 9000, estimate=good(recall=0.3))
    assert again.kind == "wait" and later.paused
    promoted, p = promote(plan, later, T0 + 9100, "alice", "checked the alarms by hand")
    assert p.kind == "advance" and promoted.stage == "fleet" and not promoted.paused
    assert promoted.history[-1].actor == "alice"
    _, r = rollback(plan, state, T0 + 9100, "alice", "the estimate was right")
    assert r.kind == "rollback"
    # an operator's own pause still needs a resume before a promote
    mine, _ = pause(plan, start(plan, T0)[0], T0 + 10, "bob", "lunch")
    assert not system_paused(mine)
    with pytest.raises(RolloutError, match="resume it before promoting"):
        promote(plan, mine, T0 + 20, "bob", "go")


def test_a_stage_held_by_labelled_evidence_too_still_rolls_back_at_its_timeout() -> None:
    plan = make_plan(shadow=False)
    state, _ = start(plan, T0)
    few = evidence(plan, "canary", windows=1)  # too little traffic: a hold that is not the estimate's
    state, d = next_step(plan, state, few, T0 + 7200, estimate=good(recall=0.3))
    assert d.kind == "rollback" and "timed out" in d.reason and not state.paused


def test_no_estimate_no_hold_and_the_record_says_why() -> None:
    none = Estimate("no_calibration", "the candidate's manifest has no calibration")
    d = canary(none)
    assert d.kind == "advance" and d.estimate == none and "estimated_recall" not in d.numbers
    assert canary(None).kind == "advance" and canary(None).estimate is None
    text = rollout_text({"id": "r-1", "candidate": "v2", "incumbent": "v1", "status": "running", "stage": "fleet",
                         "decision": d.to_dict(), "limits": {}, "stages": [], "history": []})
    assert "estimate  none (no calibration: the candidate's manifest has no calibration)" in text
    held = canary(good(recall=0.3)).to_dict()
    text = rollout_text({**{"id": "r-1", "candidate": "v2", "incumbent": "v1", "status": "running",
                            "stage": "canary", "limits": {}, "stages": [], "history": []}, "decision": held})
    assert "estimate  recall 0.300 (gate 0.850), F1 0.750" in text
