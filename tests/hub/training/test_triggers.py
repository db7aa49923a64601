"""The trigger policy, golden: each reason to retrain, each guard, their precedence."""

from __future__ import annotations

import doctest

import pytest

from hub.gate.verdict import GateConfig
from hub.training import triggers
from hub.training.settings import GateSettings, TrainingSettings
from hub.training.triggers import TriggerDecision, TriggerPolicy, decide, schedule_due

H = 3600.0
POLICY = TriggerPolicy(min_new_labels=100, min_total_labels=500, cooldown_s=6 * H, schedule_interval_s=168 * H)
NOW = 1_000 * H


def _decide(*, last: float | None = NOW - 24 * H, new: int = 0, total: int = 1000, drift: int = 0,
            due: bool = False, manual: bool = False, retry_at: int | None = None) -> TriggerDecision:
    return decide(POLICY, now=NOW, last_retrain_ts=last, new_labels=new, total_labels=total, drift_events=drift,
                  schedule_due=due, manual=manual, retry_at=retry_at)


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        # nothing asks
        ({}, (False, None, None)),
        ({"new": 99}, (False, None, None)),
        # each reason on its own
        ({"new": 100}, (True, "labels", None)),
        ({"drift": 1, "new": 1}, (True, "drift", None)),
        ({"due": True, "new": 1}, (True, "schedule", None)),
        ({"manual": True}, (True, "manual", None)),
        # precedence: manual > drift > labels > schedule
        ({"manual": True, "drift": 2, "new": 500, "due": True}, (True, "manual", None)),
        ({"drift": 2, "new": 500, "due": True}, (True, "drift", None)),
        ({"new": 500, "due": True}, (True, "labels", None)),
        # cooldown: blocks automatic triggers, not a manual one; ends exactly at cooldown_s
        ({"drift": 1, "last": NOW - 1 * H}, (False, "drift", "cooldown")),
        ({"new": 300, "last": NOW - 5.9 * H}, (False, "labels", "cooldown")),
        ({"drift": 1, "new": 1, "last": NOW - 6 * H}, (True, "drift", None)),
        # no new label since the last retrain: drift and schedule would rebuild the same model
        ({"drift": 1}, (False, "drift", "no_new_labels")),
        ({"due": True}, (False, "schedule", "no_new_labels")),
        ({"drift": 1, "last": None}, (True, "drift", None)),
        ({"manual": True, "last": NOW - 60.0}, (True, "manual", None)),
        # min labels: blocks everything, manual included, and is reported before the cooldown
        ({"drift": 1, "total": 499}, (False, "drift", "min_labels")),
        ({"manual": True, "total": 10}, (False, "manual", "min_labels")),
        ({"drift": 1, "total": 10, "last": NOW - 60.0}, (False, "drift", "min_labels")),
        # never retrained: no cooldown
        ({"new": 100, "last": None}, (True, "labels", None)),
        # the last retrain was not judged (insufficient_data): wait for more labels, not for a cooldown
        ({"drift": 1, "new": 1, "retry_at": 1001}, (False, "drift", "awaiting_data")),
        ({"drift": 1, "new": 1, "retry_at": 1000}, (True, "drift", None)),
        ({"manual": True, "retry_at": 5000}, (True, "manual", None)),
        ({"drift": 1, "total": 10, "retry_at": 5000}, (False, "drift", "min_labels")),
        ({"drift": 1, "new": 1, "retry_at": 900, "last": NOW - 1 * H}, (False, "drift", "cooldown")),
    ],
)
def test_decisions(inputs: dict, expected: tuple) -> None:
    d = _decide(**inputs)
    assert (d.fire, d.kind, d.blocked_by) == expected
    assert d.reason
    assert bool(d.detail) == (d.blocked_by is not None)


def test_reasons_and_details_say_why() -> None:
    assert _decide(drift=3).reason == "3 drift event(s) since the last retrain"
    assert _decide(new=150).reason == "150 new validated labels since the last retrain (>= 100)"
    assert _decide(due=True).reason == "scheduled every 168.0 h: last retrain 24.0 h ago"
    cooled = _decide(drift=1, last=NOW - 2 * H)
    assert cooled.detail == "last retrain 2.0 h ago, cooldown 6.0 h"
    blocked = _decide(manual=True, total=42)
    assert blocked.detail == ("42 validated labels, need 500 to train and gate a model "
                              "(a manual request overrides the cooldown, not this)")
    assert blocked.to_dict() == {"fire": False, "kind": "manual", "reason": "requested by an operator",
                                 "blocked_by": "min_labels", "detail": blocked.detail}


def test_schedule_due() -> None:
    assert schedule_due(POLICY, now=NOW, last_retrain_ts=NOW - 168 * H)
    assert not schedule_due(POLICY, now=NOW, last_retrain_ts=NOW - 167 * H)
    assert schedule_due(POLICY, now=NOW, last_retrain_ts=None)
    assert not schedule_due(TriggerPolicy(schedule_interval_s=None), now=NOW, last_retrain_ts=None)


def test_gate_settings_default_to_the_gate_defaults() -> None:
    assert GateSettings().config() == GateConfig()
    assert TrainingSettings(gate={"max_recall_drop": 0.05}).gate.config().max_recall_drop == 0.05
    with pytest.raises(ValueError, match="extra"):
        TrainingSettings(gate={"max_recal_drop": 0.05})


def test_doctests() -> None:
    assert doctest.testmod(triggers).failed == 0


def test_drift_or_schedule_without_new_labels_would_rebuild_the_same_model() -> None:
    policy = TriggerPolicy(min_new_labels=10, min_total_labels=5, cooldown_s=60.0, schedule_interval_s=3600.0)
    common = {"now": 10_000.0, "last_retrain_ts": 1_000.0, "total_labels": 50, "manual": False}
    drift = decide(policy, new_labels=0, drift_events=3, schedule_due=False, **common)
    assert (drift.fire, drift.kind, drift.blocked_by) == (False, "drift", "no_new_labels")
    assert decide(policy, new_labels=0, drift_events=0, schedule_due=True, **common).blocked_by == "no_new_labels"
    assert decide(policy, new_labels=1, drift_events=3, schedule_due=False, **common).fire
    assert decide(policy, new_labels=0, drift_events=3, schedule_due=False,
                  **{**common, "last_retrain_ts": None}).fire  # the first retrain has nothing to repeat
    assert decide(policy, new_labels=0, drift_events=0, schedule_due=False, **{**common, "manual": True}).fire
