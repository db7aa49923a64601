"""Agent integration on a real broker, real onnxruntime and a real SQLite file."""

from __future__ import annotations

from agent.app import build_agent
from agent.db import AgentDB
from hub.mqtt.ingest import IngestWorker
from hub.store import open_store
from shared.codec import encode
from shared.messages import Anomaly, Command, Sample, Stats, Status
from tests.agent.helpers import agent_settings, anomaly_trace_ids
from tests.fixtures.broker import HUB_USER, Collector, subscribe


def test_predictions_are_logged_and_anomalies_arrive_with_their_trace_ids(
    tmp_path, broker, mqtt_clients, initial_model_dir
):
    collector = Collector()
    hub = mqtt_clients.connect(broker, HUB_USER, collector=collector)
    for kind in ("anomaly", "sample", "stats", "status", "model/event"):
        subscribe(hub, f"fleetloop/dev-1/{kind}")

    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")  # the hub's acks empty the outbox
    worker = IngestWorker(host=broker.host, port=broker.port, username=HUB_USER, password=broker.password(HUB_USER),
                          store=store, share_group="agent-mqtt", client_id="agent-mqtt-ingest")
    worker.start()
    assert worker.wait_ready(10)
    settings = agent_settings(tmp_path, broker, "dev-1", initial_model_dir)
    agent = build_agent(settings)
    try:
        counters = agent.run(max_windows=800, drain_s=10)
    finally:
        worker.stop()
        store.close()

    db = AgentDB(settings.db_path)
    assert db.prediction_count() == counters.windows == 800
    logged = anomaly_trace_ids(settings.db_path)
    assert len(logged) >= 5, "the fast-failing simulator should produce anomalies"
    assert db.outbox_size() == 0

    def anomalies(msgs):
        return {m.json()["trace_id"] for m in msgs if m.topic.endswith("/anomaly")}

    collector.wait_for(lambda msgs: anomalies(msgs) >= logged, timeout=10)
    received = [m.decode(Anomaly) for m in collector.messages if m.topic.endswith("/anomaly")]
    assert {a.trace_id for a in received} == logged
    first = received[0]
    row = db.prediction(first.trace_id)
    assert row is not None and row["model_version"] == first.model_version == "v1"
    assert abs(row["score"] - first.score) < 1e-9 and first.score >= first.threshold
    assert len(first.features) == len(agent.model.manifest.feature_names)

    samples = [m.decode(Sample) for m in collector.messages if m.topic.endswith("/sample")]
    assert samples and all(not s.decision for s in samples)
    stats = [m.decode(Stats) for m in collector.messages if m.topic.endswith("/stats")]
    assert sum(s.windows for s in stats) == 800
    manifest = agent.model.manifest
    assert all(len(h) == len(e) + 1 for h, e in zip(stats[-1].feature_hist, manifest.reference.bin_edges,
                                                        strict=True))
    assert sum(s.anomalies for s in stats) == len(logged)
    # not a retained status an earlier test on this session's broker left for dev-1: only what this agent sent
    statuses = [m.decode(Status) for m in collector.messages if m.topic.endswith("/status") and not m.retain]
    assert statuses[0].state == "online" and statuses[0].model_version == "v1"
    assert statuses[-1].state == "offline"  # clean stop says offline too
    events = [m.json() for m in collector.messages if m.topic.endswith("/model/event")]
    assert events and events[0]["event"] == "loaded"


def test_retained_status_and_last_will(tmp_path, broker, mqtt_clients, initial_model_dir):
    settings = agent_settings(tmp_path, broker, "dev-2", initial_model_dir)
    agent = build_agent(settings)
    assert agent.link is not None
    agent.link.start()
    assert agent.link.connected.wait(5)
    live = Collector()
    observer = mqtt_clients.connect(broker, HUB_USER, collector=live)
    subscribe(observer, "fleetloop/dev-2/status")
    live.wait_for(lambda msgs: any(m.json()["state"] == "online" for m in msgs), timeout=5)
    # an unclean loss of the connection: the broker publishes the retained last will
    agent.link.client._sock_close()  # simulate a dropped network: no DISCONNECT is sent
    agent.link.client.loop_stop()
    live.wait_for(lambda msgs: any(m.json()["state"] == "offline" for m in msgs), timeout=60)
    late = Collector()  # a subscriber arriving afterwards learns the state from the retained message
    subscribe(mqtt_clients.connect(broker, HUB_USER, collector=late), "fleetloop/dev-2/status")
    (message,) = late.wait_count(1, timeout=5)
    assert message.retain and message.decode(Status).state == "offline"

def test_hub_can_ask_for_traces_and_bad_commands_are_dropped(tmp_path, broker, mqtt_clients, initial_model_dir):
    settings = agent_settings(tmp_path, broker, "dev-6", initial_model_dir, sample_rate=0.0)
    agent = build_agent(settings)
    agent.run(max_windows=30, drain_s=5)
    logged = dict(agent.db.conn.execute("SELECT trace_id, ts FROM predictions WHERE decision = 0 LIMIT 3").fetchall())
    wanted = list(logged)

    collector = Collector()
    hub = mqtt_clients.connect(broker, HUB_USER, collector=collector)
    subscribe(hub, "fleetloop/dev-6/sample")
    hub.publish("fleetloop/dev-6/cmd", b"{not json", qos=1)
    command = Command(ts=1.0, cmd="upload_traces", trace_ids=[*wanted, "unknown-trace"])
    hub.publish("fleetloop/dev-6/cmd", encode(command), qos=1)
    agent = build_agent(settings)  # restart on the same database; the queued commands arrive
    agent.run(duration_s=3, drain_s=5)
    assert agent.counters.extra.get("bad_inbound") == 1
    def requested(msgs):
        return [s for s in (m.decode(Sample) for m in msgs) if s.reason == "requested"]

    samples = requested(collector.wait_for(lambda msgs: len(requested(msgs)) >= 3, timeout=10))
    assert {s.trace_id for s in samples} == set(wanted)
    assert all(len(s.features) == 36 for s in samples)
    assert {s.trace_id: s.ts for s in samples} == logged  # when it was predicted, not when it was asked for
