"""Planning: deterministic, cohort-covering canary picks; validated plans; JSON round trips; doctests."""

from __future__ import annotations

import doctest
import importlib
import json
from typing import Any

import pytest

from hub.rollout import (
    Evidence,
    HealthLimits,
    RolloutError,
    RolloutPlan,
    RolloutState,
    StagePlan,
    StagePolicy,
    next_step,
    pause,
    plan_rollout,
    start,
)
from hub.rollout.state import Decision
from tests.hub.rollout.factories import FLEET, T0, evidence, make_plan, scoring

ARGS: dict[str, Any] = {"rollout_id": "r", "candidate": "v2", "incumbent": "v1", "seed": 1}


def test_same_arguments_same_plan_and_the_seed_matters() -> None:
    assert make_plan() == make_plan()
    picks = {make_plan(seed=s, canary=0.2).stage("canary").devices for s in range(20)}
    assert len(picks) > 5


def test_canary_covers_cohorts_before_doubling_up() -> None:
    for seed in range(30):
        canary = make_plan(seed=seed, canary=0.3).stage("canary").devices
        assert sorted(FLEET[d] for d in canary) == ["north/fan", "north/pump", "south/press"]
        two = make_plan(seed=seed, canary=0.2).stage("canary").devices
        assert sorted(FLEET[d] for d in two) == ["north/fan", "north/pump"]  # the largest cohorts first


def test_canary_sizes_and_shadow_choices() -> None:
    assert len(make_plan(canary=0.05).stage("canary").devices) == 1
    assert len(make_plan(canary=0.99).stage("canary").devices) == 9  # never the whole fleet
    assert [s.name for s in plan_rollout(["solo"], **ARGS).stages] == ["fleet"]
    assert [s.name for s in plan_rollout(["solo"], shadow=True, **ARGS).stages] == ["shadow", "fleet"]
    assert make_plan(shadow=False).stages[0].name == "canary"
    assert len(make_plan(shadow=0.5).stage("shadow").devices) == 5
    explicit = make_plan(canary=["pump-2", "pump-1", "pump-1"], shadow=["fan-3"])
    assert explicit.stage("canary").devices == ("pump-1", "pump-2")
    assert explicit.stage("shadow").devices == ("fan-3",)
    assert plan_rollout(["b", "a"], **ARGS).fleet == ("a", "b")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"canary": 1.5}, "strictly between 0 and 1"),
        ({"canary": ["ghost"]}, "not in the fleet"),
        ({"canary": []}, "at least one device"),
        ({"canary": "pump-1"}, "a fraction or a list"),
        ({"shadow": 0.0}, r"in \(0, 1\]"),
        ({"incumbent": "v2"}, "must differ"),
        ({"rollout_id": ""}, "needs an id"),
    ],
)
def test_bad_plans_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(RolloutError, match=message):
        make_plan(**kwargs)


def test_plan_invariants() -> None:
    policy = StagePolicy(60, 10, 600)
    fleet = StagePlan("fleet", ("a", "b"), policy)
    with pytest.raises(RolloutError, match="ending with fleet"):
        RolloutPlan("r", "v2", "v1", (fleet, StagePlan("canary", ("a",), policy)))
    with pytest.raises(RolloutError, match="outside the fleet"):
        RolloutPlan("r", "v2", "v1", (StagePlan("canary", ("z",), policy), fleet))
    with pytest.raises(RolloutError, match="sorted"):
        RolloutPlan("r", "v2", "v1", (StagePlan("fleet", ("b", "a"), policy),))
    with pytest.raises(RolloutError, match="min_duration_s < timeout_s"):
        StagePolicy(600, 10, 60)
    with pytest.raises(RolloutError, match="rollback_anomaly_factor"):
        HealthLimits(anomaly_rate_factor=6.0)
    with pytest.raises(RolloutError, match="no shadow stage"):
        make_plan(shadow=False).stage("shadow")


def _roundtrip(obj: Any) -> Any:
    return type(obj).from_dict(json.loads(json.dumps(obj.to_dict(), allow_nan=False)))


def test_serialization_round_trip() -> None:
    plan = make_plan(baseline=scoring(1000))
    assert _roundtrip(plan) == plan
    state, d0 = start(plan, T0)
    state, d1 = next_step(plan, state, evidence(plan, "shadow"), T0 + 600)
    state, d2 = pause(plan, state, T0 + 700, "alice", "lunch")
    bad = {"pump-4": Evidence(loaded=True, refused=True, candidate=scoring(5), detail="sha256 mismatch")}
    state, d3 = next_step(plan, state, evidence(plan, "canary", override=bad), T0 + 800)
    assert state.control is not None and len(state.history) == 4
    assert _roundtrip(state) == state
    for d in (d0, d1, d2, d3):
        assert _roundtrip(d) == d
    assert _roundtrip(bad["pump-4"]) == bad["pump-4"]
    mid, _ = pause(plan, start(plan, T0)[0], T0 + 5, "alice", "")
    assert _roundtrip(mid) == mid and mid.paused_at == T0 + 5


@pytest.mark.parametrize("cls", [RolloutPlan, RolloutState])
def test_malformed_records_raise_rollout_error(cls: Any) -> None:
    with pytest.raises(RolloutError, match="malformed"):
        cls.from_dict({"rollout_id": "r"})
    record = make_plan().to_dict() if cls is RolloutPlan else start(make_plan(), T0)[0].to_dict()
    record["stages" if cls is RolloutPlan else "stage"] = "nonsense" if cls is RolloutState else [{"name": "x"}]
    with pytest.raises(RolloutError):
        cls.from_dict(record)
    with pytest.raises(RolloutError):
        Decision.from_dict({**start(make_plan(), T0)[1].to_dict(), "kind": "explode"})


@pytest.mark.parametrize(
    "name",
    ["plan", "evidence", "machine", "actions", "health", "state", "stragglers", "settings", "reports", "records",
     "errors"],
)
def test_doctests_and_docstrings(name: str) -> None:
    module = importlib.import_module(f"hub.rollout.{name}")
    assert doctest.testmod(module).failed == 0
    assert module.__doc__
    public = [getattr(module, n) for n in getattr(module, "__all__", dir(module)) if not n.startswith("_")]
    for obj in public:
        if callable(obj) and getattr(obj, "__module__", None) == module.__name__:
            assert obj.__doc__, f"{name}.{obj.__name__} needs a docstring"
