"""The ingest worker against a real mosquitto and real SQLite: every kind stored, once; shared load; presence."""

from __future__ import annotations

import doctest
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetloop.devbroker import HUB_USER, DevBroker
from hub.app.metrics import HubMetrics
from hub.app.settings import HubSettings
from hub.mqtt import IngestWorker, decoding
from hub.store import HubStore, IngestRecord, IngestResult
from hub.store.rows import DeadLetter
from hub.store.sqlite import SqliteHubStore
from shared.codec import encode
from shared.errors import ConfigError, StoreError
from shared.ids import new_id
from shared.messages import Annotation, Anomaly, ModelEvent, Sample, Stats, Status
from shared.topics import Kind, Topics
from tests.fixtures.broker import Clients, publish


def anomaly(device: str, **kw: Any) -> Anomaly:
    now = time.time()
    return Anomaly(**{"device_id": device, "ts": now, "trace_id": new_id(), "window_start": now - 10,
                      "window_end": now, "score": 0.9, "threshold": 0.5, "decision": True,
                      "features": [0.5, 1.5, -3.25], "model_version": "v1", **kw})


def every_kind(device: str) -> list[tuple[Kind, Any]]:
    now = time.time()
    a = anomaly(device)
    return [
        (Kind.STATUS, Status(device_id=device, ts=now, state="online", agent_version="0.1", site="plant-a",
                             asset_type="pump", model_version="v1")),
        (Kind.ANOMALY, a),
        (Kind.SAMPLE, Sample(device_id=device, ts=now, trace_id=new_id(), window_start=now - 10, window_end=now,
                             score=0.4, threshold=0.5, decision=False, features=[1.0], reason="low_confidence")),
        (Kind.STATS, Stats(device_id=device, ts=now, period_start=now - 60, period_end=now, windows=60, anomalies=1,
                           samples=1, bad_readings=0, bad_rows=0, inference_errors=0, nan_scores=0,
                           feature_hist=[[1, 58, 1]], score_hist=[59, 1])),
        (Kind.ANNOTATION, Annotation(device_id=device, ts=now, trace_id=a.trace_id, label="fault",
                                     technician_id="tech-1")),
        (Kind.MODEL_EVENT, ModelEvent(device_id=device, ts=now, event="loaded", version="v1")),
    ]


class Ingest:
    """Builds workers on the test's broker and stops them all afterwards."""

    def __init__(self) -> None:
        self.workers: list[IngestWorker] = []
        self.group = f"g{uuid.uuid4().hex[:8]}"  # one share group per test: no stray consumer takes a share

    def start(self, broker: DevBroker, store: HubStore, **kw: Any) -> IngestWorker:
        options: dict[str, Any] = {"client_id": f"ingest-{uuid.uuid4().hex[:8]}", "share_group": self.group, **kw}
        worker = IngestWorker(host=broker.host, port=broker.port, username=HUB_USER,
                              password=broker.password(HUB_USER), prefix=broker.prefix, store=store, **options)
        worker.start()
        assert worker.wait_ready(10), "ingest worker did not connect and subscribe"
        self.workers.append(worker)
        return worker

    def stop_all(self) -> None:
        while self.workers:
            self.workers.pop().stop()


@pytest.fixture
def ingest() -> Iterator[Ingest]:
    helper = Ingest()
    yield helper
    helper.stop_all()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteHubStore]:
    s = SqliteHubStore(tmp_path / "hub.db")
    yield s
    s.close()


def test_every_message_kind_is_validated_and_stored(
    fresh_broker: DevBroker, mqtt_clients: Clients, ingest: Ingest, store: SqliteHubStore
) -> None:
    metrics = HubMetrics()
    worker = ingest.start(fresh_broker, store, metrics=metrics)
    topics = Topics(fresh_broker.prefix)
    device = mqtt_clients.connect(fresh_broker, "dev-0")
    messages = every_kind("dev-0")
    for kind, message in messages:
        publish(device, topics.topic("dev-0", kind), encode(message))
    assert worker.wait_for(lambda s: s.processed >= 6), worker.stats()

    stats = worker.stats()
    assert stats.stored == {"status": 1, "anomaly": 1, "sample": 1, "stats": 1, "annotation": 1, "model_event": 1}
    assert stats.dead_letters == {} and stats.duplicates == {}
    assert (stats.acked, stats.skipped) == (7, 1)  # the status also came through the snapshot subscription
    assert stats.received == stats.stored
    assert stats.max_lag_s is not None and 0 <= stats.max_lag_s < 5
    by_kind = dict(messages)
    got = store.prediction(by_kind[Kind.ANOMALY].trace_id)
    assert got is not None and got.features == (0.5, 1.5, -3.25) and got.kind == "anomaly"
    assert store.prediction(by_kind[Kind.SAMPLE].trace_id).reason == "low_confidence"  # type: ignore[union-attr]
    assert [s.msg_id for s in store.stats_between(0, 2e9, ["dev-0"])] == [by_kind[Kind.STATS].msg_id]
    assert [a.trace_id for a in store.annotations(device_id="dev-0")] == [by_kind[Kind.ANOMALY].trace_id]
    assert [e.event for e in store.model_events(device_id="dev-0")] == ["loaded"]
    [registered] = store.devices()
    assert (registered.device_id, registered.online, registered.site, registered.agent_version) == (
        "dev-0", True, "plant-a", "0.1")

    exposition = metrics.render()[0].decode()
    assert 'fleetloop_hub_ingested_messages_total{kind="anomaly"} 1.0' in exposition
    assert "fleetloop_hub_ingest_lag_seconds_count 6.0" in exposition


def test_a_redelivered_message_is_stored_once(
    fresh_broker: DevBroker, mqtt_clients: Clients, ingest: Ingest, store: SqliteHubStore
) -> None:
    worker = ingest.start(fresh_broker, store)
    topics = Topics(fresh_broker.prefix)
    first = mqtt_clients.connect(fresh_broker, "dev-1")
    second = mqtt_clients.connect(fresh_broker, "dev-1", client_id=f"dev-1-again-{uuid.uuid4().hex[:6]}")
    a = encode(anomaly("dev-1"))
    event = encode(ModelEvent(device_id="dev-1", ts=time.time(), event="swapped", version="v2"))
    for client in (first, second, first):  # as after a reconnect: same msg_id / trace_id, another delivery
        publish(client, topics.topic("dev-1", Kind.ANOMALY), a)
        publish(client, topics.topic("dev-1", Kind.MODEL_EVENT), event)
    assert worker.wait_for(lambda s: s.processed >= 6), worker.stats()
    stats = worker.stats()
    assert stats.stored == {"anomaly": 1, "model_event": 1}
    assert stats.duplicates == {"anomaly": 2, "model_event": 2}
    counts = store.counts()
    assert (counts.anomalies, counts.model_events) == (1, 1)


def test_two_workers_in_one_share_group_split_the_load_and_store_each_message_once(
    fresh_broker: DevBroker, mqtt_clients: Clients, ingest: Ingest, tmp_path: Path
) -> None:
    # Two processes' worth of workers: each has its own connection to the same database file.
    stores = [SqliteHubStore(tmp_path / "shared.db"), SqliteHubStore(tmp_path / "shared.db")]
    try:
        workers = [ingest.start(fresh_broker, s) for s in stores]
        topics = Topics(fresh_broker.prefix)
        devices = {d: mqtt_clients.connect(fresh_broker, d) for d in ("dev-2", "dev-3", "dev-4", "dev-5")}
        sent = []
        for i in range(400):
            device = f"dev-{2 + i % 4}"
            message = anomaly(device)
            sent.append(message.trace_id)
            devices[device].publish(topics.topic(device, Kind.ANOMALY), encode(message), qos=1)
        assert all(w.wait_for(lambda s: s.processed > 0) for w in workers)
        deadline = time.monotonic() + 10
        while sum(w.stats().processed for w in workers) < 400 and time.monotonic() < deadline:
            time.sleep(0.05)
        shares = [w.stats() for w in workers]
        assert sum(s.processed for s in shares) == 400
        assert all(s.processed >= 100 for s in shares), [s.processed for s in shares]  # round-robin: ~200 each
        assert sum(s.total_stored for s in shares) == 400 and all(not s.duplicates for s in shares)
        assert stores[0].counts().anomalies == 400
        assert all(stores[0].prediction(t) is not None for t in sent)
    finally:
        ingest.stop_all()
        for s in stores:
            s.close()


def test_last_will_takes_a_killed_device_offline(
    fresh_broker: DevBroker, mqtt_clients: Clients, ingest: Ingest, store: SqliteHubStore
) -> None:
    topics = Topics(fresh_broker.prefix)
    status_topic = topics.topic("dev-6", Kind.STATUS)
    # As agent/link.py does: the will is built when the client is, so it is older than the online status.
    will = encode(Status(device_id="dev-6", ts=time.time(), state="offline"))
    device = mqtt_clients.connect(fresh_broker, "dev-6", will=(status_topic, will, True))
    worker = ingest.start(fresh_broker, store)
    publish(device, status_topic, encode(Status(device_id="dev-6", ts=time.time(), state="online", site="s1")),
            retain=True)
    assert worker.wait_for(lambda s: s.stored.get("status", 0) >= 1)
    assert store.device("dev-6").online  # type: ignore[union-attr]

    # Killed: the socket goes without a DISCONNECT, so the broker publishes the will.
    device.loop_stop()
    device.socket().close()  # type: ignore[union-attr]
    assert worker.wait_for(lambda s: s.stored.get("status", 0) >= 2), worker.stats()
    registered = store.device("dev-6")
    assert registered is not None and not registered.online and registered.site == "s1"


def test_retained_statuses_are_the_presence_snapshot_at_startup(
    fresh_broker: DevBroker, mqtt_clients: Clients, ingest: Ingest, store: SqliteHubStore
) -> None:
    topics = Topics(fresh_broker.prefix)
    for device_id, state in (("dev-7", "online"), ("dev-8", "offline")):
        device = mqtt_clients.connect(fresh_broker, device_id)
        status = Status(device_id=device_id, ts=time.time(), state=state, agent_version="0.2")  # type: ignore[arg-type]
        publish(device, topics.topic(device_id, Kind.STATUS), encode(status), retain=True)
    worker = ingest.start(fresh_broker, store)  # subscribes after the statuses were retained
    assert worker.wait_for(lambda s: s.stored.get("status", 0) >= 2), worker.stats()
    assert {(d.device_id, d.online) for d in store.devices()} == {("dev-7", True), ("dev-8", False)}

    # A live status reaches the worker twice (shared and snapshot subscriptions) and is stored once.
    live = mqtt_clients.connect(fresh_broker, "dev-8")
    publish(live, topics.topic("dev-8", Kind.STATUS),
            encode(Status(device_id="dev-8", ts=time.time(), state="online")), retain=True)
    assert worker.wait_for(lambda s: s.stored.get("status", 0) >= 3 and s.skipped >= 1), worker.stats()
    assert worker.wait_idle(quiet_s=0.3)
    stats = worker.stats()
    # Skipped: the live copy, plus (mosquitto 2.0 only) the retained copies sent to the shared subscription.
    assert (stats.stored["status"], stats.duplicates, stats.processed) == (3, {}, 3)
    assert stats.skipped in (1, 3)
    assert store.device("dev-8").online  # type: ignore[union-attr]


def test_malformed_and_foreign_messages_are_dead_lettered_and_acknowledged(
    fresh_broker: DevBroker, mqtt_clients: Clients, ingest: Ingest, store: SqliteHubStore
) -> None:
    topics = Topics(fresh_broker.prefix)
    device = mqtt_clients.connect(fresh_broker, "dev-0")
    hub = mqtt_clients.connect(fresh_broker, HUB_USER)
    # A device that retains a data message: the broker would replay it to every new subscriber.
    publish(device, topics.topic("dev-0", Kind.ANOMALY), encode(anomaly("dev-0")), retain=True)
    worker = ingest.start(fresh_broker, store, share_group=None, max_payload_bytes=10_000)  # a lone worker
    publish(device, topics.topic("dev-0", Kind.STATS), b"{not json")
    publish(device, topics.topic("dev-0", Kind.ANOMALY), encode(anomaly("dev-9")))
    publish(device, topics.topic("dev-0", Kind.ANOMALY), b"[" * 20_000)
    publish(device, topics.topic("dev-0", Kind.MODEL_EVENT), b'{"device_id": "dev-0", "ts": 1}')
    publish(hub, f"{fresh_broker.prefix}/-not-a-device/anomaly", b"{}")
    good = anomaly("dev-0")
    publish(device, topics.topic("dev-0", Kind.ANOMALY), encode(good))
    assert worker.wait_for(lambda s: s.processed >= 7), worker.stats()

    expected = {"retained": 1, "bad_json": 1, "device_mismatch": 1, "too_large": 1, "schema": 1,
                "unknown_topic": 1}
    assert worker.stats().dead_letters == expected
    assert store.dead_letter_counts() == expected
    assert worker.stats().acked == 7 and worker.stats().stored == {"anomaly": 1}
    too_large = store.dead_letters(reason="too_large")[0]
    assert (too_large.payload_size, len(too_large.payload), too_large.device_id) == (20_000, 4096, "dev-0")
    assert store.dead_letters(reason="unknown_topic")[0].device_id is None
    assert store.prediction(good.trace_id) is not None


class FailingStore:
    """A store that is down: every write fails, as with a full disk or a locked file."""

    def __init__(self) -> None:
        self.attempts = 0

    def ingest_batch(self, records: Any, dead_letters: Any = ()) -> IngestResult:
        self.attempts += 1
        raise StoreError("disk I/O error")


def test_unacknowledged_messages_come_back_to_a_restarted_worker(
    fresh_broker: DevBroker, mqtt_clients: Clients, ingest: Ingest, store: SqliteHubStore
) -> None:
    """manual_ack: a worker killed before its batch commits loses nothing; the same client id resumes."""
    topics = Topics(fresh_broker.prefix)
    failing = FailingStore()
    doomed = ingest.start(fresh_broker, failing, client_id="ingest-a")  # type: ignore[arg-type]
    device = mqtt_clients.connect(fresh_broker, "dev-1")
    sent = [anomaly("dev-1") for _ in range(30)]
    for message in sent:
        publish(device, topics.topic("dev-1", Kind.ANOMALY), encode(message))
    assert doomed.wait_for(lambda s: s.total_received == 30 and s.store_errors >= 2), doomed.stats()
    assert doomed.stats().acked == 0
    # kill -9: the socket goes, nothing is flushed or acknowledged, the persistent session stays.
    ingest.workers.remove(doomed)
    doomed.client.loop_stop()
    doomed.client.socket().close()  # type: ignore[union-attr]
    doomed._stopping.set()

    revived = ingest.start(fresh_broker, store, client_id="ingest-a")
    assert revived.wait_for(lambda s: s.processed >= 30), revived.stats()
    assert revived.stats().stored == {"anomaly": 30}
    assert all(store.prediction(m.trace_id) is not None for m in sent)


def test_a_store_outage_is_retried_without_losing_or_acknowledging(
    fresh_broker: DevBroker, mqtt_clients: Clients, ingest: Ingest, store: SqliteHubStore
) -> None:
    class Flaky:
        def __init__(self) -> None:
            self.failures = 3

        def ingest_batch(self, records: list[IngestRecord], dead_letters: list[DeadLetter] = ()) -> IngestResult:  # type: ignore[assignment]
            if self.failures:
                self.failures -= 1
                raise StoreError("database is locked")
            return store.ingest_batch(records, dead_letters)

    worker = ingest.start(fresh_broker, Flaky())  # type: ignore[arg-type]
    device = mqtt_clients.connect(fresh_broker, "dev-2")
    message = anomaly("dev-2")
    publish(device, Topics(fresh_broker.prefix).topic("dev-2", Kind.ANOMALY), encode(message))
    assert worker.wait_for(lambda s: s.processed >= 1), worker.stats()
    assert (worker.stats().store_errors, worker.stats().acked) == (3, 1)
    assert store.prediction(message.trace_id) is not None


def test_worker_from_settings(fresh_broker: DevBroker, mqtt_clients: Clients, tmp_path: Path) -> None:
    settings = HubSettings.load(
        mqtt_port=fresh_broker.port, mqtt_password=fresh_broker.password(HUB_USER), prefix=fresh_broker.prefix,
        tokens={"t" * 32: "operator"}, data_dir=tmp_path, share_group=f"s{uuid.uuid4().hex[:6]}",
        ingest_client_id=f"ingest-{uuid.uuid4().hex[:6]}",
    )
    store = SqliteHubStore(settings.store.removeprefix("sqlite:///"))
    worker = IngestWorker.from_settings(settings, store)
    worker.start()
    try:
        assert worker.wait_ready(10)
        device = mqtt_clients.connect(fresh_broker, "dev-3")
        publish(device, settings.topics.topic("dev-3", Kind.ANOMALY), encode(anomaly("dev-3")))
        assert worker.wait_for(lambda s: s.total_stored == 1)
    finally:
        worker.stop()
        store.close()
    assert (tmp_path / "hub.db").exists()


def test_settings_refuse_insecure_defaults_outside_dev_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="no MQTT password: set FLEETLOOP_HUB_MQTT_PASSWORD"):
        HubSettings.load()
    with pytest.raises(ConfigError, match="no API tokens: set FLEETLOOP_HUB_TOKENS"):
        HubSettings.load(mqtt_password="pw")
    with pytest.raises(ConfigError, match="shorter than 16 characters"):
        HubSettings.load(mqtt_password="pw", tokens={"short": "viewer"})
    with pytest.raises(ConfigError, match=r"refusing plain-text MQTT to broker\.example"):
        HubSettings.load(mqtt_password="pw", tokens={"t" * 20: "viewer"}, mqtt_host="broker.example")
    with pytest.raises(ConfigError, match="unknown_field"):
        HubSettings.load(dev_mode=True, unknown_field=1)
    assert HubSettings.load(dev_mode=True).tokens == {}

    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"a" * 20: "technician", "b" * 20: "operator"}))
    monkeypatch.setenv("FLEETLOOP_HUB_MQTT_PASSWORD", "pw")
    monkeypatch.setenv("FLEETLOOP_HUB_TOKENS_FILE", str(tokens))
    monkeypatch.setenv("FLEETLOOP_HUB_DRIFT__PSI_THRESHOLD", "0.25")
    settings = HubSettings.load()
    assert settings.tokens == {"a" * 20: "technician", "b" * 20: "operator"}
    assert settings.drift.psi_threshold == 0.25
    assert "a" * 20 not in repr(settings)  # tokens stay out of logs
    tokens.write_text(json.dumps({"c" * 20: "admin"}))
    with pytest.raises(ConfigError, match="unknown role"):
        HubSettings.load()


def test_docstring_examples_run() -> None:
    result = doctest.testmod(decoding)
    assert result.attempted > 0 and result.failed == 0


def test_a_burst_of_bulk_messages_never_starves_the_devices_control_messages(
    fresh_broker: DevBroker, mqtt_clients: Clients, ingest: Ingest, store: SqliteHubStore
) -> None:
    """A device draining a backlog of samples past its rate still gets its model events and stats through: a
    rollout's evidence and a swap's report ride their own bucket (`hub.mqtt.ratelimit.rate_lane`)."""
    worker = ingest.start(fresh_broker, store, rate_per_device_s=0.001, burst_per_device=5)
    topics = Topics(fresh_broker.prefix)
    device = mqtt_clients.connect(fresh_broker, "dev-0")
    for _ in range(20):
        now = time.time()
        sample = Sample(device_id="dev-0", ts=now, trace_id=new_id(), window_start=now - 10, window_end=now,
                        score=0.1, threshold=0.5, decision=False, features=[0.5], model_version="v1", reason="random")
        publish(device, topics.topic("dev-0", Kind.SAMPLE), encode(sample))
    event = ModelEvent(device_id="dev-0", ts=time.time(), event="swapped", version="v2")
    publish(device, topics.topic("dev-0", Kind.MODEL_EVENT), encode(event))
    assert worker.wait_for(lambda s: s.stored.get("model_event", 0) == 1), worker.stats()
    stats = worker.stats()
    assert stats.stored.get("sample") == 5 and stats.rate_limited == {"dev-0": 15}, stats
    assert [e.event for e in store.model_events(device_id="dev-0")] == ["swapped"]
