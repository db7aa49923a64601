"""The way back (issue 11, #7), with the rollout service on a real broker: revert after a completed rollout,
retry after a rollout rolled back because devices could not fetch the candidate, and no retry after a health
failure. What devices would receive is read from the broker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetloop.devbroker import DevBroker
from hub.errors import RolloutError
from shared.messages import ModelEvent
from tests.hub.rollout.test_service import World, healthy_period, open_world, variant

FETCH_ERROR = "fetch: GET http://hub.test/models/v2/artifact failed after 0 bytes: [Errno 111] Connection refused"


@pytest.fixture
def world(tmp_path: Path, broker: DevBroker, initial_model_dir: Path) -> Iterator[World]:
    """v1 active, v2 a candidate whose gate passed, ten devices on two sites online with v1."""
    tag = f"rv{time.monotonic_ns() % 100_000}"
    devices = [f"{tag}-a{i}" for i in range(5)] + [f"{tag}-b{i}" for i in range(5)]
    v2 = variant(initial_model_dir, tmp_path / "v2", "v2")
    with open_world(tmp_path, broker, initial_model_dir, v2, devices, online=devices,
                    site=lambda d: "site-a" if "-a" in d else "site-b", client_id=f"revert-{tag}") as w:
        yield w


def drive(w: World, rollout_id: str, version: str, incumbent: str) -> None:
    """Report `version` loaded and healthy through every stage of the rollout, until it completes."""
    rollout = w.service.get(rollout_id)
    for stage in rollout.plan.stages:
        devices = stage.devices
        w.wait_assigned(devices, version)
        w.advance(5)
        for d in devices:
            w.swapped(d, version)
        w.advance(70)
        healthy_period(w, {d: version if d in devices else incumbent for d in w.devices})
        [decision] = w.service.tick()
        assert decision.kind in ("advance", "complete"), decision.reason
    assert w.service.get(rollout_id).state.status == "completed"


def test_revert_after_completion_returns_the_fleet_to_the_previous_version(world: World) -> None:
    w = world
    done = w.service.start("v2", actor="operator:ana", reason="field fix", canary=0.2).id
    drive(w, done, "v2", "v1")
    assert (w.registry.get("v2").status, w.registry.get("v1").status) == ("active", "retired")
    with pytest.raises(RolloutError, match="completed"):
        w.service.rollback(done, actor="operator:ana", reason="too late")  # what an operator had before: refused

    revert = w.service.revert(actor="operator:ana", reason="site-b complains about v2")
    assert (revert.plan.candidate, revert.plan.incumbent) == ("v1", "v2")
    assert revert.row.reason.startswith(f"revert (undoing rollout {done}): site-b complains")
    assert w.registry.get("v1").status == "canary"
    start = w.store.model_audit(version="v1")[-1]
    assert (start.action, start.from_status, start.actor) == ("rollout_start", "retired", "operator:ana")
    assert "revert" in start.reason
    drive(w, revert.id, "v1", "v2")
    assert (w.registry.get("v1").status, w.registry.get("v2").status) == ("active", "retired")
    assert w.registry.active_version() == "v1"
    assert {d: a.version for d, a in w.retained().items()} == dict.fromkeys(w.devices, "v1")

    again = w.service.revert(actor="operator:ana", reason="v2 was fine after all")  # undoes the revert
    assert (again.plan.candidate, again.plan.incumbent) == ("v2", "v1")


def test_a_rollout_rolled_back_for_fetch_errors_can_be_retried(world: World) -> None:
    w = world
    first = w.service.start("v2", actor="operator:ana", reason="field fix", canary=0.2)
    canary = first.plan.stage("canary").devices
    w.wait_assigned(canary, "v2")
    w.advance(5)
    w.ingest(*(ModelEvent(device_id=d, ts=w.clock.now, model_version="v1", event="refused", version="v2",
                          detail=FETCH_ERROR) for d in canary))
    [back] = w.service.tick()
    assert back.kind == "rollback" and back.numbers["infra_failures"] == back.numbers["failures"] == len(canary)
    assert w.service.get(first.id).state.status == "rolled_back"
    assert w.registry.get("v2").status == "candidate"  # says nothing about the model
    assert w.store.model_audit(version="v2")[-1].details["infrastructure_failure"] is True

    w.advance(5)
    retry = w.service.retry(first.id, actor="operator:ana", reason="artifact URL fixed")
    assert retry.id != first.id and retry.plan.candidate == "v2"
    assert retry.plan.stage("canary").devices == canary and retry.row.reason.startswith(f"retry of rollout {first.id}")
    assert w.registry.get("v2").status == "canary"
    w.wait_assigned(canary, "v2")


def test_a_rollout_rolled_back_for_the_models_health_is_not_retried(world: World) -> None:
    w = world
    first = w.service.start("v2", actor="operator:ana", reason="field fix", canary=0.2)
    canary = first.plan.stage("canary").devices
    w.wait_assigned(canary, "v2")
    w.advance(5)
    w.ingest(ModelEvent(device_id=canary[0], ts=w.clock.now, model_version="v2", event="health_failed",
                        version="v2", detail="12 NaN scores in 50 windows"),
             ModelEvent(device_id=canary[1], ts=w.clock.now, model_version="v1", event="refused", version="v2",
                        detail=FETCH_ERROR))
    [back] = w.service.tick()
    assert back.kind == "rollback" and back.numbers["infra_failures"] == 1 and back.numbers["failures"] == 2
    assert w.registry.get("v2").status == "rolled_back"
    with pytest.raises(RolloutError, match="not an infrastructure failure"):
        w.service.retry(first.id, actor="operator:ana", reason="try again")
    with pytest.raises(RolloutError, match="only a candidate"):
        w.service.start("v2", actor="operator:ana", reason="try again")
