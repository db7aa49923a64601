"""RolloutService around the fleet on a real broker, store and registry: the drift-aware yardstick as the hub
wires it (drift reports in the store), late joiners getting the active version, one active version at a time.

Assignments go through mosquitto; a hub-side observer sees what each device would receive (retained).
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fleetloop.devbroker import DevBroker
from hub.store.rows import ROLLOUT_EVENT
from models.onnx_export import onnx_scores, onnx_session
from models.version import read_version
from shared.ids import new_id
from shared.manifest import MANIFEST_FILE
from shared.messages import Anomaly, Sample, Stats, Status
from tests.fixtures.broker import HUB_USER, Collector, connect_client, subscribe
from tests.hub.rollout.test_service import T0, World, open_world

# v2 was retrained on the drifted fleet: its reference (field traffic it scored) puts 45 of 1,000 windows at or
# above its 0.5 threshold. The drifted v1 hardly alarms any more: 2 in 1,000.
REF_HIST = [400, 200, 100, 80, 60, 40, 30, 20, 15, 10, 10, 8, 7, 5, 5, 4, 3, 2, 1, 0]
CONTROL_HIST = [700, 200, 50, 20, 10, 7, 5, 3, 2, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
_tags = itertools.count()


CALIBRATION = {"x": [0.0, 1.0], "y": [0.0, 1.0], "fitted_on": "eval", "n": 400, "n_positive": 80}
"""v2's scores taken as its chance of a failure: enough to estimate it on the stage's traffic without labels."""


def retrained(src: Path, dst: Path) -> Path:
    """v1's model re-versioned as v2, with the reference and threshold a retrain on drifted data gave it."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / MANIFEST_FILE).read_text())
    manifest["version"], manifest["threshold"] = "v2", 0.5
    manifest["reference"]["score_histogram"] = REF_HIST
    manifest["calibration"] = CALIBRATION
    (dst / MANIFEST_FILE).write_text(json.dumps(manifest))
    return dst


@pytest.fixture
def world(tmp_path: Path, broker: DevBroker, initial_model_dir: Path) -> Iterator[World]:
    tag = f"fl{next(_tags)}x{time.monotonic_ns() % 10_000}"
    fleet = [f"{tag}-a{i}" for i in range(5)] + [f"{tag}-b{i}" for i in range(5)]
    late = [f"{tag}-late{i}" for i in range(2)]  # not in the registry until they come online
    v2 = retrained(initial_model_dir, tmp_path / "v2")
    with open_world(tmp_path, broker, initial_model_dir, v2, fleet + late, online=fleet,
                    site=lambda d: d.split("-")[1][0], client_id=f"fleet-{tag}") as w:
        yield w


def fleet_of(w: World) -> list[str]:
    return [d for d in w.devices if "-late" not in d]


def late_of(w: World) -> list[str]:
    return [d for d in w.devices if "-late" in d]


def stats(w: World, device: str, version: str, anomalies: int, hist: list[int]) -> None:
    w.ingest(Stats(device_id=device, ts=w.clock.now, model_version=version, period_start=w.clock.now - 10,
                   period_end=w.clock.now, windows=sum(hist), anomalies=anomalies, samples=0, bad_readings=0,
                   bad_rows=0, inference_errors=0, nan_scores=0, feature_hist=[], score_hist=hist,
                   latency_p50_ms=0.5, latency_p99_ms=2.0))


def complete(w: World) -> str:
    """Roll v2 out over the fleet (promoted through the stages) and see every device take it."""
    rollout = w.service.start("v2", actor="operator:ana", reason="drift", canary=0.2)
    w.advance(5)
    w.service.promote(rollout.id, actor="operator:ana", reason="canary fine")
    w.wait_assigned(fleet_of(w), "v2")
    for d in fleet_of(w):
        w.swapped(d)
    w.advance(5)
    assert w.service.promote(rollout.id, actor="operator:ana", reason="fleet fine").state.status == "completed"
    return rollout.id


# -- the yardstick ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("verdict", "kind"), [("drift", "advance"), ("no_drift", "rollback")])
def test_drift_verdict_on_the_incumbent_picks_the_yardstick(world: World, verdict: str, kind: str) -> None:
    w = world
    reason = "drift in 5 of 12 features: temp.mean" if verdict == "drift" else "no drift: largest PSI 0.03"
    w.store.save_drift_report({"scope": "fleet@v1", "verdict": verdict, "reason": reason}, "fleet@v1", verdict,
                              T0 - 600)
    w.store.save_drift_report({"scope": "fleet@v1", "verdict": "insufficient_data"}, "fleet@v1",
                              "insufficient_data", T0 - 60)  # inconclusive: the verdict before it stands
    rollout = w.service.start("v2", actor="operator:ana", reason="drift fix", canary=0.2)
    assert rollout.plan.expectation is not None and rollout.plan.expectation.anomaly_rate == pytest.approx(0.045)
    canary = rollout.plan.stage("canary").devices
    w.advance(10)
    for d in canary:
        w.swapped(d)
    w.advance(60)
    for d in fleet_of(w):  # v2 alarms 4.5% as its reference expects; the drifted v1 0.2%: ×7 apart
        stats(w, d, "v2", 45, REF_HIST) if d in canary else stats(w, d, "v1", 2, CONTROL_HIST)
    [decision] = w.service.tick()
    assert decision.kind == kind, decision.reason
    assert decision.yardstick is not None
    if verdict == "drift":
        assert decision.yardstick.basis == "expectation"
        assert f"latest drift verdict on fleet@v1 at {T0 - 600:.0f}: {reason}" in decision.yardstick.reason
        assert decision.numbers["anomaly_rate_ratio"] == pytest.approx(1.0)
    else:
        assert decision.yardstick.basis == "control"
        assert "anomaly rate 0.0450 vs control 0.0020 (×7.14): beyond ×5" in decision.reason
    audit = w.store.model_audit(version="v2")[-1]
    assert audit.details["yardstick"] == decision.yardstick.to_dict()
    assert w.store.events(kind=ROLLOUT_EVENT)[-1].payload["yardstick"] == decision.yardstick.to_dict()
    assert w.service.get(rollout.id).decision == decision


def test_a_drifted_control_judges_the_canary_on_its_own_traffic(world: World) -> None:
    """Canary devices replaying machines near the end of their lives alarm on a third of their windows, ×7 the
    reference v2 was made with (which rolled such canaries back): v2 scored at the hub on the vectors those devices
    sent during the stage expects just that, so the canary advances, and the yardstick says what it measured."""
    w = world
    w.store.save_drift_report({"scope": "fleet@v1", "verdict": "drift", "reason": "drift in 5 of 12 features"},
                              "fleet@v1", "drift", T0 - 600)
    rollout = w.service.start("v2", actor="operator:ana", reason="drift fix", canary=0.2)
    canary = rollout.plan.stage("canary").devices
    w.advance(10)
    for d in canary:
        w.swapped(d)
    w.advance(60)
    manifest, onnx = read_version(w.registry.path("v2"))
    lo, hi = (np.array([e[i] for e in manifest.reference.bin_edges]) for i in (0, -1))
    rng, session, rates = np.random.default_rng(3), onnx_session(onnx), []
    for d in canary:  # every alarm and every fourth window (the random slice) reach the hub, as agents send them
        X = (lo + 3.5 * (hi - lo) * rng.random((200, len(lo)))).astype(np.float32)
        scores = onnx_scores(session, X)
        alarm = scores >= manifest.threshold
        common = {"device_id": d, "ts": w.clock.now, "model_version": "v2", "threshold": manifest.threshold}
        w.ingest(*[
            Anomaly(**common, trace_id=new_id(), window_start=j, window_end=j + 5, score=float(s), decision=True,
                    features=x.tolist(), sampled=j % 4 == 0) if a else
            Sample(**common, trace_id=new_id(), window_start=j, window_end=j + 5, score=float(s), decision=False,
                   features=x.tolist(), reason="random")
            for j, (x, s, a) in enumerate(zip(X, scores, alarm, strict=True)) if a or j % 4 == 0])
        hist = np.bincount(np.searchsorted(manifest.reference.score_bin_edges, scores, side="right"),
                           minlength=len(REF_HIST))
        stats(w, d, "v2", int(alarm.sum()), hist.tolist())
        rates.append(alarm.mean())
    for d in fleet_of(w):
        if d not in canary:
            stats(w, d, "v1", 2, CONTROL_HIST)
    assert np.mean(rates) > 0.3  # against the reference's 4.5%: beyond ×5
    [decision] = w.service.tick()
    assert decision.kind == "advance", decision.reason
    expect = decision.yardstick.expectation if decision.yardstick else None
    assert expect is not None and expect.source == "stage" and expect.devices == canary
    assert expect.samples == 100 and (expect.since, expect.until) == (T0, w.clock.now)
    assert (expect.data_from, expect.data_to) == (0.0, 204.0)
    assert expect.anomaly_rate == pytest.approx(np.mean(rates))
    assert decision.numbers["anomaly_rate_ratio"] == pytest.approx(1.0)
    assert decision.numbers["score_psi"] < 0.2  # the quiet windows' histogram is estimated from a quarter of them
    assert "scores on the traffic of its stage's devices during the stage" in decision.yardstick.reason  # type: ignore[union-attr]
    # the same read and scores, through v2's calibration: its label-free estimate there, recorded beside
    estimate = decision.estimate
    assert estimate is not None and estimate.status == "ok", estimate
    assert (estimate.source, estimate.samples, estimate.vectors) == ("stage", expect.samples, expect.vectors)
    assert decision.numbers["estimated_recall"] == estimate.recall


# -- late joiners -------------------------------------------------------------------------------------------------
def retained(broker: DevBroker, devices: list[str]) -> dict[str, dict[str, object]]:
    """The retained assignment a device connecting now would get."""
    collector = Collector()
    client = connect_client(broker, HUB_USER, collector=collector)
    try:
        for device in devices:
            subscribe(client, f"fleetloop/{device}/model/assign")
        collector.wait_for(lambda msgs: {m.topic for m in msgs if m.retain} >= {
            f"fleetloop/{d}/model/assign" for d in devices}, timeout=10)
        return {m.topic.split("/")[1]: json.loads(m.payload) for m in collector.messages if m.retain and m.payload}
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_device_joining_after_completion_gets_the_active_version(world: World) -> None:
    w = world
    rollout_id = complete(w)
    assert w.service.catch_up() == []  # the whole fleet serves v2
    joiner, sleeper = late_of(w)
    w.advance(30)
    w.ingest(Status(device_id=joiner, ts=w.clock.now, state="online", site="a", model_version="v1"),
             Status(device_id=sleeper, ts=w.clock.now, state="offline", site="a", model_version="v1"))
    assert w.service.tick() == []  # nothing running; the tick catches the late joiner up
    w.wait_assigned([joiner], "v2")
    got = retained(w.broker, [joiner])[joiner]
    assert (got["version"], got["mode"], got["rollout_id"], got["msg_id"]) == (
        "v2", "active", rollout_id, f"{rollout_id}/v2/active")  # the same assignment the fleet got
    assert got["sha256"] == w.registry.get("v2").sha256
    w.settled()
    assert not w.assigns(sleeper)  # offline: it is caught up when its status says online

    assert w.service.catch_up() == []  # sent once; again only after resync_s if it still serves v1
    w.advance(600)
    assert w.service.catch_up() == [joiner]
    w.swapped(joiner)
    w.ingest(Status(device_id=sleeper, ts=w.clock.now, state="online", site="a", model_version="v1"))
    assert w.service.catch_up() == [sleeper]
    w.wait_assigned([sleeper], "v2")

    w.advance(5)  # a fleet device that fell back to v1 by itself is sent v2 again
    w.ingest(Status(device_id=fleet_of(w)[0], ts=w.clock.now, state="online", model_version="v1"))
    assert w.service.catch_up() == [fleet_of(w)[0]]


def test_during_a_rollout_a_device_outside_it_gets_the_incumbent(world: World) -> None:
    w = world
    rollout = w.service.start("v2", actor="operator:ana", reason="drift", canary=0.2)
    canary = rollout.plan.stage("canary").devices
    joiner = late_of(w)[0]
    w.advance(10)
    w.ingest(Status(device_id=joiner, ts=w.clock.now, state="online", site="b", model_version=None))
    w.swapped(canary[0])  # a stage device serving the candidate is the rollout's, not a straggler
    assert w.service.catch_up() == [joiner]
    w.wait_assigned([joiner], "v1")
    got = retained(w.broker, [joiner])[joiner]
    assert (got["version"], got["rollout_id"], got["msg_id"]) == ("v1", None, "registry/v1/active")


# -- one active version ---------------------------------------------------------------------------------------------
def test_completion_activates_before_it_retires_and_a_crash_between_is_finished(world: World) -> None:
    w = world
    rollout_id = complete(w)
    v2, v1 = w.store.model_audit(version="v2")[-1], w.store.model_audit(version="v1")[-1]
    assert (v2.action, v2.to_status, v1.action, v1.to_status) == (
        "rollout_promote", "active", "rollout_retire", "retired")
    assert v2.id < v1.id  # never a moment without an active version
    assert [r.version for r in w.store.model_versions(status="active")] == ["v2"]

    # as if the hub died between the two writes: v2 active, v1 still active from before
    w.store.set_model_status("v1", "active", actor="test", action="crash", reason="retire never happened", ts=T0)
    assert w.registry.active_version() == "v2"  # the one activated last, while two rows say active
    w.service.resync()  # at start-up (and every resync_s)
    assert [r.version for r in w.store.model_versions(status="active")] == ["v2"]
    last = w.store.model_audit(version="v1")[-1]
    assert (last.action, last.to_status, last.reason) == (
        "rollout_retire", "retired", f"replaced by v2 (rollout {rollout_id})")
    w.service.resync()
    assert w.store.model_audit(version="v1")[-1].id == last.id  # idempotent
