"""RolloutService on a real store, registry and broker: evidence is ingested as real device messages, every
assignment goes through mosquitto, and a hub-side subscriber checks what devices would receive (retained).

The service's clock is a test clock; messages are ingested with that clock as their hub receive time.
"""

from __future__ import annotations

import gzip
import itertools
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from fleetloop.devbroker import DevBroker
from hub.api import create_app
from hub.app.settings import HubSettings
from hub.mqtt.publisher import CommandPublisher
from hub.registry.service import Registry
from hub.registry.signing import SigningKey
from hub.rollout import HealthLimits, RolloutError, StagePolicy
from hub.rollout.service import RolloutConflict, RolloutNotFound, RolloutService
from hub.store import IngestRecord
from hub.store.rows import ROLLOUT_EVENT
from hub.store.sqlite import SqliteHubStore
from shared.codec import decode
from shared.manifest import MANIFEST_FILE
from shared.messages import Assign, Command, ModelEvent, Stats, Status
from shared.wire import replace
from tests.fixtures.broker import (
    HUB_USER,
    Collector,
    Received,
    barrier,
    barrier_topic,
    connect_client,
    publish,
    subscribe,
)
from tests.hub.api.conftest import TOKEN, TOKENS, Clock, serve
from tests.hub.rollout.factories import passed_gate

T0 = 1_700_000_000.0
POLICIES = {
    "shadow": StagePolicy(min_duration_s=60, min_windows=50, timeout_s=600),
    "canary": StagePolicy(min_duration_s=60, min_windows=50, timeout_s=600),
    "fleet": StagePolicy(min_duration_s=60, min_windows=50, timeout_s=600),
}
LIMITS = HealthLimits(min_rate_windows=100)
HIST = (50, 30, 10, 6, 4)  # per 100 windows, the same shape for both versions
_tags = itertools.count()


def variant(src: Path, dst: Path, version: str) -> Path:
    """A copy of version dir `src` re-versioned as `version` (same model bytes)."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / MANIFEST_FILE).read_text())
    manifest["version"] = version
    (dst / MANIFEST_FILE).write_text(json.dumps(manifest))
    return dst


def hub_settings(broker: DevBroker, **overrides: object) -> HubSettings:
    values: dict[str, object] = {"dev_mode": True, "mqtt_host": broker.host, "mqtt_port": broker.port,
                                 "mqtt_username": HUB_USER, "mqtt_password": SecretStr(broker.password(HUB_USER))}
    values.update(overrides)
    return HubSettings(**values)  # type: ignore[arg-type]


def started_publisher(settings: HubSettings, client_id: str) -> CommandPublisher:
    publisher = CommandPublisher(settings, client_id=client_id)
    publisher.start()
    deadline = time.monotonic() + 10
    while not publisher.is_connected():
        assert time.monotonic() < deadline, "the hub publisher did not connect"
        time.sleep(0.02)
    return publisher


def clear_retained(broker: DevBroker, devices: list[str]) -> None:
    """Leave the session broker as we found it: no retained assignment for these devices."""
    client = connect_client(broker, HUB_USER)
    try:
        for device in devices:
            publish(client, f"fleetloop/{device}/model/assign", b"", retain=True)
    finally:
        client.disconnect()
        client.loop_stop()


@dataclass
class World:
    store: SqliteHubStore
    registry: Registry
    service: RolloutService
    clock: Clock
    devices: list[str]
    inbox: Collector  # what the devices would receive: their assign and cmd topics
    broker: DevBroker
    publisher: CommandPublisher  # the service's connection to the broker
    barrier_topic: str  # the inbox's client receives it too

    def ingest(self, *messages: Status | Stats | ModelEvent) -> None:
        self.store.ingest_batch([IngestRecord(m, self.clock.now) for m in messages])

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    def swapped(self, device: str, version: str = "v2") -> None:
        self.ingest(ModelEvent(device_id=device, ts=self.clock.now, model_version=version, event="swapped",
                               version=version, detail="from v1"),
                    Status(device_id=device, ts=self.clock.now, state="online", model_version=version))

    def stats(self, device: str, version: str, *, windows: int = 100, anomalies: int = 2, nan: int = 0) -> None:
        k = windows // 100
        self.ingest(Stats(device_id=device, ts=self.clock.now, model_version=version, period_start=self.clock.now - 10,
                          period_end=self.clock.now, windows=windows, anomalies=anomalies, samples=0, bad_readings=0,
                          bad_rows=0, inference_errors=0, nan_scores=nan, feature_hist=[],
                          score_hist=[c * k for c in HIST], latency_p50_ms=0.5, latency_p99_ms=2.0))

    def assigns(self, device: str) -> list[Assign]:
        return [decode(Assign, m.payload) for m in self.inbox.messages
                if m.topic == f"fleetloop/{device}/model/assign" and m.payload]

    def commands(self, device: str) -> list[Command]:
        return [decode(Command, m.payload) for m in self.inbox.messages
                if m.topic == f"fleetloop/{device}/cmd"]

    def wait_assigned(self, devices: list[str] | tuple[str, ...], version: str, mode: str = "active") -> None:
        def done(_: list[Received]) -> bool:
            return all((a := self.assigns(d)) and (a[-1].version, a[-1].mode) == (version, mode) for d in devices)
        self.inbox.wait_for(done, timeout=10)

    def settled(self) -> list[Received]:
        """What reached the inbox before a barrier sent through the service's own connection: everything the
        service published so far (negative checks read the inbox after this, never after a sleep)."""
        return barrier(self.publisher.client, self.barrier_topic, self.inbox)

    def retained(self) -> dict[str, Assign]:
        """The retained assignment of every device, as a device connecting now would get it."""
        collector = Collector()
        client = connect_client(self.broker, HUB_USER, collector=collector)
        try:
            topic = barrier_topic()
            for device in [*self.devices, topic]:
                subscribe(client, topic if device == topic else f"fleetloop/{device}/model/assign")
            # The broker queued the retained messages when it took the SUBSCRIBEs, before this later PUBLISH.
            return {m.topic.split("/")[1]: decode(Assign, m.payload)
                    for m in barrier(client, topic, collector) if m.retain and m.payload}
        finally:
            client.disconnect()
            client.loop_stop()


@contextmanager
def open_world(tmp_path: Path, broker: DevBroker, v1: Path, v2: Path, devices: list[str], *, online: list[str],
               site: Callable[[str], str], client_id: str) -> Iterator[World]:
    """A RolloutService on `broker` with v1 active and v2 a candidate; the `online` devices report v1, and the
    observer (`World.inbox`) receives what every one of `devices` would on its assign and cmd topics."""
    clock = Clock(T0)
    store = SqliteHubStore(tmp_path / "hub.db")
    registry = Registry(store, tmp_path / "registry", SigningKey.generate(), clock=clock)
    registry.register(v1, actor="operator:ana", reason="bootstrap", status="active")
    registry.register(v2, actor="hub:retrain", reason="drift")
    passed_gate(registry, "v2")
    inbox = Collector()
    observer = connect_client(broker, HUB_USER, collector=inbox)
    for device in devices:
        subscribe(observer, f"fleetloop/{device}/model/assign")
        subscribe(observer, f"fleetloop/{device}/cmd")
    subscribe(observer, observed := barrier_topic())
    publisher = started_publisher(hub_settings(broker), client_id)
    service = RolloutService(store, registry, publisher, artifact_url=lambda v: f"http://hub.test/models/{v}/artifact",
                             clock=clock, policies=POLICIES, limits=LIMITS)
    w = World(store, registry, service, clock, devices, inbox, broker, publisher, observed)
    for device in online:
        w.ingest(Status(device_id=device, ts=T0, state="online", site=site(device), model_version="v1"))
    try:
        yield w
    finally:
        publisher.stop()
        observer.disconnect()
        observer.loop_stop()
        clear_retained(broker, devices)
        store.close()


@pytest.fixture
def world(tmp_path: Path, broker: DevBroker, initial_model_dir: Path) -> Iterator[World]:
    tag = f"ro{next(_tags)}x{time.monotonic_ns() % 10_000}"
    devices = [f"{tag}-a{i}" for i in range(5)] + [f"{tag}-b{i}" for i in range(5)]
    v2 = variant(initial_model_dir, tmp_path / "v2", "v2")
    with open_world(tmp_path, broker, initial_model_dir, v2, devices, online=devices,
                    site=lambda d: "site-a" if "-a" in d else "site-b", client_id=f"rollouts-{tag}") as w:
        yield w


def healthy_period(w: World, serving: dict[str, str]) -> None:
    for device, version in serving.items():
        w.stats(device, version)


def test_happy_path_canary_then_fleet_then_completed(world: World) -> None:
    w = world
    rollout = w.service.start("v2", actor="operator:ana", reason="drift on site-b", canary=0.2)
    canary = rollout.plan.stage("canary").devices
    rest = [d for d in w.devices if d not in canary]
    assert len(canary) == 2 and {d.split("-")[1][0] for d in canary} == {"a", "b"}  # both sites
    assert w.registry.get("v2").status == "canary"
    w.wait_assigned(canary, "v2")
    first = w.assigns(canary[0])[-1]
    assert (first.url, first.rollout_id, first.sha256) == (
        "http://hub.test/models/v2/artifact", rollout.id, w.registry.get("v2").sha256)
    w.settled()
    assert all(not w.assigns(d) for d in rest)

    w.advance(20)
    for d in canary:
        w.swapped(d)
    w.advance(20)
    healthy_period(w, {d: "v2" if d in canary else "v1" for d in w.devices})
    [wait] = w.service.tick()
    assert wait.kind == "wait" and "watched 40 s of 60 s" in wait.reason

    w.advance(30)
    healthy_period(w, {d: "v2" if d in canary else "v1" for d in w.devices})
    [advance] = w.service.tick()
    assert advance.kind == "advance" and advance.stage == "fleet"
    assert advance.reason == "canary healthy on 2 devices after 70 s: on to fleet"
    w.wait_assigned(rest, "v2")
    audit = w.store.model_audit(version="v2")
    assert audit[-1].action == "rollout_advance" and audit[-1].details["numbers"]["devices_ready"] == 2
    assert audit[-1].details["rollout_id"] == rollout.id

    w.advance(10)
    for d in rest:
        w.swapped(d)
    w.advance(60)
    healthy_period(w, dict.fromkeys(w.devices, "v2"))
    [complete] = w.service.tick()
    assert complete.kind == "complete" and w.service.get(rollout.id).state.status == "completed"
    assert (w.registry.get("v2").status, w.registry.get("v1").status) == ("active", "retired")
    assert w.registry.active_version() == "v2"
    assert [(a.action, a.to_status, a.actor) for a in w.store.model_audit(version="v2")] == [
        ("registered", "candidate", "hub:retrain"), ("gate", "candidate", "hub:retrain"),
        ("rollout_start", "canary", "operator:ana"),
        ("rollout_advance", "canary", "system"), ("rollout_complete", "active", "system")]
    assert "drift on site-b" in w.store.model_audit(version="v2")[2].reason
    retire = w.store.model_audit(version="v1")[-1]
    assert (retire.action, retire.from_status, retire.to_status) == ("rollout_retire", "active", "retired")
    events = [e.payload for e in w.store.events(kind=ROLLOUT_EVENT)]
    assert [e["action"] for e in events] == ["start", "advance", "complete"]
    retained = w.retained()
    assert {d: (a.version, a.mode) for d, a in retained.items()} == dict.fromkeys(w.devices, ("v2", "active"))
    assert w.service.tick() == []  # nothing running


def test_nan_scores_on_the_canary_roll_back_and_the_rest_never_see_v2(world: World) -> None:
    w = world
    rollout = w.service.start("v2", actor="operator:ana", reason="retrain", canary=0.2)
    canary = rollout.plan.stage("canary").devices
    rest = [d for d in w.devices if d not in canary]
    w.wait_assigned(canary, "v2")
    w.advance(10)
    w.swapped(canary[0])
    w.swapped(canary[1])
    w.stats(canary[0], "v2", nan=3)
    w.stats(canary[1], "v2")
    [decision] = w.service.tick()
    assert decision.kind == "rollback" and f"{canary[0]}: 3 NaN scores" in decision.reason
    assert w.service.get(rollout.id).state.status == "rolled_back"
    assert w.registry.get("v2").status == "rolled_back" and w.registry.active_version() == "v1"
    audit = w.store.model_audit(version="v2")[-1]
    assert (audit.action, audit.actor, audit.details["decision"]) == ("rollout_rollback", "system", "rollback")
    assert audit.details["numbers"]["devices_failed"] == 1
    w.wait_assigned(canary, "v1")
    w.inbox.wait_for(lambda _: all(w.commands(d) for d in canary), timeout=10)
    assert all(c.cmd == "rollback" for d in canary for c in w.commands(d))
    w.settled()
    assert all(not w.assigns(d) and not w.commands(d) for d in rest)  # v2 never reached them
    retained = w.retained()
    assert set(retained) == set(canary) and {a.version for a in retained.values()} == {"v1"}
    with pytest.raises(RolloutError, match="rolled back"):
        w.service.promote(rollout.id, actor="operator:ana", reason="too late")


def test_operator_rolls_back_from_the_fleet_stage(world: World) -> None:
    w = world
    rollout = w.service.start("v2", actor="operator:ana", reason="retrain", canary=0.2)
    w.advance(5)
    promoted = w.service.promote(rollout.id, actor="operator:ana", reason="canary looked fine in the lab")
    assert promoted.state.stage == "fleet" and promoted.decision is not None and promoted.decision.kind == "advance"
    w.wait_assigned(w.devices, "v2")
    for d in w.devices[:6]:
        w.swapped(d)  # the rest are still fetching: they get no rollback command, only the incumbent
    w.advance(5)
    back = w.service.rollback(rollout.id, actor="operator:bo", reason="customer complaint at site-b")
    assert back.state.status == "rolled_back"
    last = back.state.history[-1]
    assert (last.actor, last.action, last.reason) == (
        "operator:bo", "rollback", "rolled back by operator:bo: customer complaint at site-b")
    w.wait_assigned(w.devices, "v1")
    w.inbox.wait_for(lambda _: all(w.commands(d) for d in w.devices[:6]), timeout=10)
    w.settled()
    assert all(not w.commands(d) for d in w.devices[6:])
    assert w.registry.get("v2").status == "rolled_back"
    audit = w.store.model_audit(version="v2")
    assert [(a.action, a.actor) for a in audit[2:]] == [
        ("rollout_start", "operator:ana"), ("rollout_promote", "operator:ana"), ("rollout_rollback", "operator:bo")]
    assert {a.version for a in w.retained().values()} == {"v1"}


def test_pause_stops_the_stage_clock_and_resume_restarts_it(world: World) -> None:
    w = world
    rollout = w.service.start("v2", actor="operator:ana", reason="retrain", canary=0.2)
    canary = rollout.plan.stage("canary").devices
    w.advance(10)
    for d in canary:
        w.swapped(d)
    paused = w.service.pause(rollout.id, actor="operator:ana", reason="shift change")
    assert paused.state.paused
    with pytest.raises(RolloutError, match="already paused"):
        w.service.pause(rollout.id, actor="operator:ana", reason="again")
    w.advance(120)
    healthy_period(w, {d: "v2" if d in canary else "v1" for d in w.devices})
    [held] = w.service.tick()
    assert held.kind == "wait" and held.reason.startswith("paused")
    w.service.resume(rollout.id, actor="operator:ana", reason="shift done")
    w.advance(30)
    [wait] = w.service.tick()
    assert wait.kind == "wait" and "watched 40 s of 60 s" in wait.reason  # the 120 s paused do not count
    w.advance(30)
    healthy_period(w, {d: "v2" if d in canary else "v1" for d in w.devices})
    [advance] = w.service.tick()
    assert advance.kind == "advance"
    actions = [(a.action, a.actor) for a in w.store.model_audit(version="v2")][3:5]
    assert actions == [("rollout_pause", "operator:ana"), ("rollout_resume", "operator:ana")]
    with pytest.raises(RolloutError, match="not paused"):
        w.service.resume(rollout.id, actor="operator:ana", reason="?")


def test_shadow_stage_is_judged_on_shadow_reports(world: World) -> None:
    w = world
    rollout = w.service.start("v2", actor="operator:ana", reason="retrain", canary=0.2, shadow=True)
    canary = rollout.plan.stage("canary").devices
    assert [s.name for s in rollout.plan.stages] == ["shadow", "canary", "fleet"]
    assert w.registry.get("v2").status == "shadow"
    w.wait_assigned(canary, "v2", mode="shadow")

    def report(device: str, disagreements: int) -> None:
        metrics = {"windows": 100.0, "compared": 100.0, "disagreements": float(disagreements),
                   "shadow_anomaly_rate": 0.02, "nan_scores": 0.0, "inference_errors": 0.0, "latency_mean_ms": 1.0}
        w.ingest(ModelEvent(device_id=device, ts=w.clock.now, model_version="v1", event="shadow_report",
                            version="v2", detail="vs v1", metrics=metrics))

    w.advance(5)
    for d in canary:
        w.ingest(ModelEvent(device_id=d, ts=w.clock.now, model_version="v1", event="loaded", version="v2",
                            detail="shadow beside v1"))
    w.advance(60)
    for d in canary:
        report(d, disagreements=20)
    healthy_period(w, dict.fromkeys(w.devices, "v1"))  # in shadow every device serves the incumbent
    [held] = w.service.tick()
    assert held.kind == "wait" and "shadow disagreement 0.200 over 0.05" in held.reason
    assert held.numbers["disagreement_rate"] == 0.2

    w.advance(5)  # the stage counts every report since it began: 40 of 400 windows disagree, still too many
    for d in canary:
        report(d, disagreements=0)
    [still] = w.service.tick()
    assert still.kind == "wait" and still.numbers["disagreement_rate"] == 0.1
    for _ in range(4):
        for d in canary:
            report(d, disagreements=0)
    [advance] = w.service.tick()
    assert advance.kind == "advance" and advance.stage == "canary"
    assert w.registry.get("v2").status == "canary"
    w.wait_assigned(canary, "v2", mode="active")


def test_one_rollout_at_a_time_and_only_candidates(world: World, initial_model_dir: Path, tmp_path: Path) -> None:
    w = world
    w.registry.register(variant(initial_model_dir, tmp_path / "v3", "v3"), actor="hub:retrain", reason="r")
    passed_gate(w.registry, "v3")
    first = w.service.start("v2", actor="operator:ana", reason="one", canary=0.2)
    with pytest.raises(RolloutConflict, match=f"rollout {first.id} of v2 is running"):
        w.service.start("v3", actor="operator:ana", reason="two")
    w.service.abort(first.id, actor="operator:ana", reason="superseded by v3")
    assert w.registry.get("v2").status == "candidate"  # aborted, not judged bad
    with pytest.raises(RolloutError, match="v1 is active: only a candidate"):
        w.service.start("v1", actor="operator:ana", reason="?")
    with pytest.raises(RolloutNotFound):
        w.service.get("ro-nope")
    second = w.service.start("v3", actor="operator:ana", reason="two", canary=[w.devices[0]])
    assert second.plan.stage("canary").devices == (w.devices[0],)


def test_a_silent_canary_times_out_and_rolls_back(world: World) -> None:
    w = world
    rollout = w.service.start("v2", actor="operator:ana", reason="retrain", canary=0.2)
    w.advance(601)
    [decision] = w.service.tick()
    assert decision.kind == "rollback" and decision.reason.startswith("canary timed out after 601 s")
    assert w.service.get(rollout.id).state.history[-1].action == "timeout"


def test_resync_republishes_the_same_assignments(world: World, broker: DevBroker) -> None:
    w = world
    rollout = w.service.start("v2", actor="operator:ana", reason="retrain", canary=0.2)
    canary = rollout.plan.stage("canary").devices
    w.wait_assigned(canary, "v2")
    first = w.assigns(canary[0])[-1]
    assert first.msg_id == f"{rollout.id}/v2/active"
    clear_retained(broker, list(canary))  # as if the broker lost its retained store
    w.inbox.clear()
    restarted = RolloutService(w.store, w.registry, w.service.publisher, artifact_url=w.service.artifact_url,
                               clock=w.clock, resync_s=300)
    assert restarted.resync() == len(canary)
    w.wait_assigned(canary, "v2")
    again = w.assigns(canary[0])[-1]
    signed = {"ts": again.ts, "expires": again.expires, "counter": again.counter, "approval": again.approval}
    assert again == replace(first, **signed)  # the same assignment, signed anew with a higher counter
    assert again.counter > first.counter and again.device_id == canary[0]
    w.inbox.clear()
    w.advance(299)
    restarted.tick()
    assert w.settled() == []  # the tick at 299 s sent nothing (it shares the service's connection)
    w.advance(1)  # every resync_s the tick re-sends them
    restarted.tick()
    w.wait_assigned(canary, "v2")


# -- the API -----------------------------------------------------------------------------------------------------
def test_api_roles_models_and_rollouts(world: World, tmp_path: Path) -> None:
    w = world
    settings = HubSettings(dev_mode=False, tokens=TOKENS, mqtt_password=SecretStr("secret"))
    app = create_app(settings, w.store, clock=w.clock, registry=w.registry, rollouts=w.service)
    with serve(app) as url:
        def client(role: str | None) -> httpx.Client:
            headers = {"Authorization": f"Bearer {TOKEN[role]}"} if role else {}
            return httpx.Client(base_url=url, headers=headers, timeout=30)

        with client("technician") as tech, client("viewer") as viewer, client("operator") as op, client(None) as anon:
            body = {"candidate": "v2", "canary": 0.2, "reason": "drift", "actor": "ana"}
            assert tech.post("/rollouts", json=body).status_code == 403
            assert viewer.post("/rollouts", json=body).status_code == 403
            assert anon.post("/rollouts", json=body).status_code == 401
            assert op.post("/rollouts", json={**body, "canary": 1.5}).status_code == 422
            assert op.post("/rollouts", json={**body, "candidate": "v9"}).status_code == 404
            created = op.post("/rollouts", json=body)
            assert created.status_code == 201, created.text
            rid = created.json()["id"]
            assert created.json()["actor"] == "operator:ana" and created.json()["stage"] == "canary"
            assert op.post("/rollouts", json=body).status_code == 409

            assert [r["id"] for r in viewer.get("/rollouts").json()] == [rid]
            detail = viewer.get(f"/rollouts/{rid}").json()
            assert detail["history"][0]["actor"] == "operator:ana" and detail["plan"]["candidate"] == "v2"
            assert viewer.get("/rollouts/ro-missing").status_code == 404
            assert tech.post(f"/rollouts/{rid}/pause", json={"reason": "x"}).status_code == 403
            paused = op.post(f"/rollouts/{rid}/pause", json={"reason": "lunch", "actor": "bo"})
            assert paused.status_code == 200 and paused.json()["paused"]
            assert paused.json()["history"][-1]["reason"] == "paused by operator:bo: lunch"
            assert op.post(f"/rollouts/{rid}/pause", json={"reason": "again"}).status_code == 409
            assert op.post(f"/rollouts/{rid}/explode", json={"reason": "x"}).status_code == 422
            back = op.post(f"/rollouts/{rid}/rollback", json={"reason": "no"})
            assert back.json()["status"] == "rolled_back"

            models = {m["version"]: m["status"] for m in viewer.get("/models").json()}
            assert models == {"v1": "active", "v2": "rolled_back"}
            assert [m["version"] for m in viewer.get("/models", params={"status": "active"}).json()] == ["v1"]
            v2 = viewer.get("/models/v2").json()
            assert [a["action"] for a in v2["audit"]] == ["registered", "gate", "rollout_start", "rollout_pause",
                                                          "rollout_rollback"]
            assert v2["signature"] == w.registry.get("v2").signature
            assert viewer.get("/models/v9").status_code == 404
            assert anon.get("/models").status_code == 401
            artifact = anon.get("/models/v2/artifact")  # devices have no token
            assert artifact.status_code == 200 and artifact.headers["content-type"] == "application/gzip"
            assert artifact.content == w.registry.artifact("v2") and gzip.decompress(artifact.content)
            assert anon.get("/models/v9/artifact").status_code == 404

    bare = create_app(settings, w.store, clock=w.clock)
    with serve(bare) as url, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN['operator']}"}) as c:
        assert c.get("/models").status_code == 503
        assert c.get("/models/v1/artifact").status_code == 503
        assert c.get("/rollouts").status_code == 503
        assert c.post("/rollouts", json={"candidate": "v2", "reason": "x"}).status_code == 503
