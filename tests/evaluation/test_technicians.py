"""Technicians label a feedback engine once its gateway is `delay` cycles past its failure, through the outbox."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.db import PRIORITY_ANNOTATION, AgentDB, PredictionRow
from fleetloop.evaluation.plan import FleetPlan, Gateway, ReplayClock, label_offset, labelled, plan_fleet
from fleetloop.evaluation.technicians import FAULT_TYPE, Desk
from shared.topics import Topics

SIZE = 5  # window size: a gateway's first prediction of an engine ends on its 5th cycle
SHARE, DELAY, HORIZON, SEED = 0.5, 10, 30, 3


def log_predictions(db: AgentDB, gateway: Gateway, until: int, clock: ReplayClock | None = None) -> None:
    """What the agent would have logged after replaying `until` readings: one window per cycle from SIZE on,
    its ends the engine's cycles, or the data clock's stamps of the readings when `clock` is given."""
    offsets = gateway.offsets()
    rows = []
    for e in gateway.engines:
        for cycle in range(SIZE, e.cycles + 1):
            if offsets[e.unit] + cycle > until:
                break
            start, end = float(cycle - SIZE + 1), float(cycle)
            if clock is not None:
                start, end = clock.stamp(offsets[e.unit] + cycle - SIZE + 1), clock.stamp(offsets[e.unit] + cycle)
            rows.append(PredictionRow(f"{gateway.device_id}-{e.unit}-{cycle:04d}", gateway.device_id, 0.0,
                                      str(e.unit), start, end, "v1", b"", 0.5, False))
    db.write_batch(rows, [])


def labels_in(db: AgentDB) -> list[dict[str, object]]:
    return list(db.query("SELECT trace_id, label, fault_type, technician_id, signal FROM annotations "
                            "ORDER BY trace_id"))


def desk(plan: FleetPlan, root: Path, clock: ReplayClock | None = None) -> Desk:
    return Desk(plan, root, Topics("fleetloop"), HORIZON, SHARE, DELAY, SEED, clock=clock)


@pytest.mark.parametrize("clock", [None, ReplayClock(rate=250.0)], ids=["cycles", "data-clock"])
def test_labels_come_after_failure_plus_delay_only_for_feedback_engines(tmp_path: Path,
                                                                        clock: ReplayClock | None) -> None:
    plan = plan_fleet({1: 60, 2: 70, 3: 80, 4: 90}, devices=1, seed=SEED)
    (gateway,) = plan.gateways
    first = gateway.engines[0]
    assert first.feedback
    db = AgentDB(tmp_path / gateway.device_id / "agent.db")
    technicians = desk(plan, tmp_path, clock)
    assert technicians.run(0.0) == 0  # nothing logged yet

    log_predictions(db, gateway, until=first.cycles + DELAY - 1, clock=clock)
    assert technicians.run(0.0) == 0 and labels_in(db) == []  # failed, but the technician is not there yet
    log_predictions(db, gateway, until=first.cycles + DELAY, clock=clock)
    sent = technicians.run(0.0)
    windows = first.cycles - SIZE + 1
    picked = labelled(windows, SHARE, label_offset(SEED, first.unit))
    assert sent == len(picked) == len(labels_in(db)) and technicians.progress[gateway.device_id].position == \
        first.cycles + DELAY
    for row in labels_in(db):
        cycle = int(str(row["trace_id"]).rsplit("-", 1)[1])
        fault = first.cycles - cycle <= HORIZON
        assert (row["label"], row["fault_type"]) == (("fault", FAULT_TYPE) if fault else ("no_fault", None))
        assert (row["technician_id"], row["signal"]) == ("tech-gw-0", "confirmed")
    assert {int(str(r["trace_id"]).rsplit("-", 1)[1]) - SIZE for r in labels_in(db)} == set(picked.tolist())
    assert technicians.run(0.0) == 0  # an engine is labelled once

    log_predictions(db, gateway, until=gateway.cycles, clock=clock)  # evaluation engines are never labelled
    technicians.run(0.0)
    labelled_units = {str(r["trace_id"]).split("-")[2] for r in labels_in(db)}
    assert labelled_units == {str(u) for u in plan.feedback_units}
    technicians.close()


def test_each_label_leaves_through_the_agents_outbox(tmp_path: Path) -> None:
    plan = plan_fleet({1: 50, 2: 50}, devices=1, seed=SEED)
    (gateway,) = plan.gateways
    db = AgentDB(tmp_path / gateway.device_id / "agent.db")
    log_predictions(db, gateway, until=gateway.cycles)
    technicians = desk(plan, tmp_path)
    sent = technicians.run(0.0)
    rows = db.due_outbox(now=1e12, limit=10_000)
    assert sent > 0 and len(rows) == sent and technicians.sent == sent
    assert {(r.topic, r.priority) for r in rows} == {("fleetloop/gw-0/annotation", PRIORITY_ANNOTATION)}
    faults = sum(json.loads(r.payload)["label"] == "fault" for r in rows)
    assert faults == technicians.faults and 0 < faults < sent
    assert np.all([json.loads(r.payload)["trace_id"].startswith("gw-0-") for r in rows])
    technicians.close()


def test_the_select_policy_labels_as_many_windows_by_the_hubs_policy_and_counts_failures(tmp_path: Path) -> None:
    plan = plan_fleet({1: 60, 2: 70, 3: 80, 4: 90}, devices=1, seed=SEED)
    (gateway,) = plan.gateways
    db = AgentDB(tmp_path / gateway.device_id / "agent.db")
    log_predictions(db, gateway, until=gateway.cycles)
    regimes = {e.unit: ["a", "b"] * e.cycles for e in gateway.engines}
    technicians = Desk(plan, tmp_path, Topics("fleetloop"), HORIZON, SHARE, DELAY, SEED, policy="select",
                       threshold_of=lambda version: 0.4, regimes=regimes)
    sent = technicians.run(0.0)
    feedback = [e for e in gateway.engines if e.feedback]
    assert sent == len(labels_in(db)) == sum(-(-(e.cycles - SIZE + 1) // 2) for e in feedback)  # ceil(share * n)
    assert technicians.failures == {e.unit for e in feedback}  # every failure gets a fault label
    assert 0 < technicians.random_labels < sent
    technicians.close()
