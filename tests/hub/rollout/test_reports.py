"""Evidence, yardsticks and records from store rows, without a store: `hub.rollout.reports` and `.records`."""

from __future__ import annotations

import dataclasses

from hub.rollout import Scoring, next_step, start
from hub.rollout.records import Rollout, event_record, registry_move, settled_by
from hub.rollout.reports import assigned_since, baseline, control_trust, performance_trust, stage_evidence
from hub.store import DriftReportRow, ModelEventRow
from hub.store.rows import EventRow, RolloutRow, StageStatsRow
from tests.hub.rollout.factories import T0, evidence, make_plan


def event(device: str, kind: str, at: float, version: str = "v2", **metrics: float) -> ModelEventRow:
    return ModelEventRow(f"{device}-{kind}-{at}", device, at, at, version, kind, version, None, dict(metrics))


def stats(device: str, version: str, at: float, windows: int = 100, anomalies: int = 2) -> StageStatsRow:
    return StageStatsRow(device, version, at, windows, anomalies, 0, 0, 1.0, [windows - anomalies, anomalies])


def test_stage_evidence_counts_the_candidate_since_its_assignment_and_stats_per_version() -> None:
    plan = make_plan(shadow=False)
    state, _ = start(plan, T0)
    canary = plan.stage("canary").devices
    device, outside = canary[0], next(d for d in plan.fleet if d not in canary)
    assert assigned_since(plan, state) == dict.fromkeys(canary, T0)
    events = [event(device, "refused", T0 - 1), event(device, "loaded", T0 + 1), event(device, "loaded", T0 + 1, "v9"),
              event("stranger", "loaded", T0 + 1)]
    rows = [stats(device, "v2", T0 + 5), stats(outside, "v1", T0 + 5, anomalies=7)]
    ev = stage_evidence(plan, state, events, rows)
    assert set(ev) == {device, outside}
    assert ev[device].loaded and not ev[device].refused and ev[device].candidate == Scoring(100, 2, 0, 0, 1.0, (98, 2))
    assert ev[outside].candidate is None and ev[outside].incumbent == Scoring(100, 7, 0, 0, 1.0, (93, 7))
    assert baseline(rows, "v1") == Scoring(100, 7, 0, 0, 1.0, (93, 7)) and baseline(rows, "v0") is None


def test_control_trust_takes_the_newest_conclusive_verdict_within_its_age() -> None:
    def report(ts: float, verdict: str) -> DriftReportRow:
        return DriftReportRow(int(ts), ts, "fleet@v1", verdict, {"reason": f"{verdict} at {ts}"})

    newest_first = [report(300, "insufficient"), report(200, "drift"), report(100, "no_drift")]
    assert not control_trust(newest_first, "fleet@v1", since=150).trusted
    assert control_trust(newest_first[2:], "fleet@v1", since=50).trusted
    assert control_trust(newest_first, "fleet@v1", since=250).reason == "no drift verdict on fleet@v1"


def test_an_incumbent_whose_realized_performance_degraded_is_no_yardstick() -> None:
    """The labels showed v1 missing failures (a new failure mode, no drift): a candidate that catches them alarms
    more than v1 on the same machines, so v1's numbers cannot judge it; an older event, or another version's, can."""
    def degraded(ts: float, version: str) -> EventRow:
        return EventRow(int(ts), ts, "performance_degraded",
                        {"model_version": version, "scope": "cohort:site-a", "reason": "recall 0.64 against 0.81"})

    events = [degraded(100, "v1"), degraded(200, "v0")]
    trust = performance_trust(events, "v1", since=50)
    assert trust is not None and not trust.trusted and "recall 0.64 against 0.81" in trust.reason
    assert performance_trust(events, "v1", since=150) is None and performance_trust(events, "v2", since=0) is None


def test_records_of_a_decision() -> None:
    plan = make_plan(shadow=False)
    state, decision = start(plan, T0, actor="ops")
    row = RolloutRow("r-1", "v2", "v1", state.status, T0, T0, "ops", "weekly", plan.to_dict(), state.to_dict(),
                     decision.to_dict())
    rollout = Rollout.from_row(row)
    assert rollout.plan == plan and rollout.state == state and rollout.decision == decision
    move = registry_move(rollout, decision)
    assert (move.status, move.actor, move.action) == ("canary", "ops", "rollout_start")
    assert move.reason.endswith(": weekly") and move.details["rollout_id"] == "r-1"
    assert event_record(plan, state, decision, "why")["to_stage"] == "canary"
    done, last = next_step(plan, state, evidence(plan, "canary", 5_000), T0 + 10_000)
    assert done.stage == "fleet" and registry_move(Rollout(row, plan, done, last), last).status == "canary"
    assert settled_by(None, "v1") is None and settled_by(row, "v1") is None  # running: it speaks for itself
    finished = dataclasses.replace(row, status="rolled_back")
    assert settled_by(finished, "v1") == "r-1" and settled_by(finished, "v2") is None
