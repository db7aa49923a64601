"""Agents → broker → hub: everything the agents send is stored once, with trace ids intact."""

from __future__ import annotations

import threading

from agent.app import build_agent, record_annotation
from agent.db import AgentDB
from hub.mqtt.ingest import IngestWorker
from hub.store import open_store
from shared.messages import Annotation
from shared.topics import Topics
from tests.agent.helpers import agent_settings, anomaly_trace_ids
from tests.fixtures.broker import HUB_USER


def test_agents_messages_are_all_stored_by_the_hub(tmp_path, broker, initial_model_dir):
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    worker = IngestWorker(host=broker.host, port=broker.port, username=HUB_USER, password=broker.password(HUB_USER),
                          store=store, share_group="e2e", client_id="e2e-ingest", batch_size=100)
    worker.start()
    assert worker.wait_ready(10)
    devices = ["dev-7", "dev-8"]
    agents = []
    for i, device in enumerate(devices):
        settings = agent_settings(tmp_path, broker, device, initial_model_dir, site=f"site-{i}",
                                  asset_type="pump", sample_rate=0.05)
        agents.append(build_agent(settings))
    # a technician's annotation recorded at the machine before the agent runs: it leaves first
    db = AgentDB(agents[0].settings.db_path)
    note = Annotation(device_id="dev-7", ts=1.0, start_ts=0.0, end_ts=1e12, label="fault", technician_id="tech-1")
    record_annotation(db, Topics(), note)
    db.close()

    threads = [threading.Thread(target=a.run, kwargs={"max_windows": 600, "drain_s": 15}) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert worker.wait_idle(quiet_s=0.5, timeout=20)

    for agent, device in zip(agents, devices, strict=True):
        logged = anomaly_trace_ids(agent.settings.db_path)
        assert logged, f"{device} produced no anomaly"
        stored = {p.trace_id for p in store.predictions(0, 1e12, kind="anomaly", device_ids=[device])}
        assert stored == logged
        row = store.prediction(sorted(logged)[0])
        assert row is not None and row.device_id == device and row.model_version == "v1"
        stats = store.stats_between(0, 1e12, device_ids=[device])
        assert sum(s.windows for s in stats) == 600
        samples = store.predictions(0, 1e12, kind="sample", device_ids=[device])
        assert samples
        registry = store.device(device)
        assert registry is not None and registry.model_version == "v1" and registry.site.startswith("site-")
        assert not registry.online  # a clean stop says offline
    assert [a.annotation_id for a in store.annotations(device_id="dev-7")] == [note.annotation_id]
    events = store.model_events(device_id="dev-8")
    assert events and events[0].event == "loaded"
    assert store.dead_letter_counts() == {}

    # redelivery: the agent sends the same annotation again (e.g. after a crash before the ack) → stored once
    db = AgentDB(agents[0].settings.db_path)
    record_annotation(db, Topics(), note)
    db.close()
    again = build_agent(agents[0].settings)
    again.run(max_windows=1, drain_s=10)
    assert worker.wait_idle(quiet_s=0.5, timeout=20)
    assert len(store.annotations(device_id="dev-7")) == 1
    assert worker.stats().duplicates.get("annotation", 0) >= 1
    worker.stop()
    store.close()
