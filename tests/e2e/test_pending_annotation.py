"""An annotation for a trace the hub never saw is kept pending, the hub asks the device, the label joins."""

from __future__ import annotations

import time

from agent.app import build_agent
from hub.labels.service import LabelSettings, missing_traces, run_labels
from hub.mqtt.publisher import CommandPublisher, TraceRequester
from hub.store import IngestRecord
from shared.codec import decode
from shared.messages import Annotation, Command
from tests.agent.helpers import agent_settings
from tests.e2e.hubside import hub_side
from tests.fixtures.broker import HUB_USER, Clients, Collector, barrier, barrier_topic, subscribe


def test_pending_annotation_is_joined_after_the_hub_asks_for_the_trace(tmp_path, broker, initial_model_dir,
                                                                      mqtt_clients: Clients):
    hub_settings, store, worker = hub_side(tmp_path, broker, "pending")

    settings = agent_settings(tmp_path, broker, "dev-9", initial_model_dir, sample_rate=0.0, low_confidence_per_min=0)
    agent = build_agent(settings)
    agent.run(max_windows=40, drain_s=10)
    quiet = agent.db.conn.execute("SELECT trace_id FROM predictions WHERE decision = 0 LIMIT 1").fetchone()[0]
    assert worker.wait_idle(quiet_s=0.3, timeout=10)
    assert store.prediction(quiet) is None  # a quiet prediction never left the device

    annotation = Annotation(device_id="dev-9", ts=time.time(), trace_id=quiet, label="fault", fault_type="seal",
                            technician_id="tech-3")
    store.ingest_batch([IngestRecord(annotation, time.time())])
    labels = LabelSettings()
    assert [m.trace_id for m in missing_traces(store, labels, now=time.time())] == [quiet]
    assert run_labels(store, labels, now=time.time()).label_set.items == ()  # pending: not trainable yet, not lost

    sent = Collector()  # what the broker holds for dev-9, as the hub sent it
    watcher = mqtt_clients.connect(broker, HUB_USER, collector=sent)
    subscribe(watcher, "fleetloop/dev-9/cmd")
    subscribe(watcher, marker := barrier_topic())
    commands = CommandPublisher(hub_settings)
    commands.start()
    requester = TraceRequester(store, labels, commands.send)
    assert requester.run(time.time()) == 1
    assert requester.run(time.time()) == 0  # not asked again before retry_s
    # The broker took the command (queued for dev-9's session) before the device comes back, and it was sent once.
    asked = [decode(Command, m.payload) for m in barrier(commands.client, marker, sent)]
    assert [(c.cmd, c.trace_ids) for c in asked if c.cmd == "upload_traces"] == [("upload_traces", [quiet])]
    build_agent(settings).run(duration_s=2, drain_s=10)  # the device comes back and answers the command
    assert worker.wait_for(lambda s: s.stored.get("sample", 0) >= 1, timeout=10)
    row = store.prediction(quiet)
    assert row is not None and row.reason == "requested"
    assert missing_traces(store, labels, now=time.time()) == []
    items = run_labels(store, labels, now=time.time()).label_set.items
    assert [(i.trace_id, i.label) for i in items] == [(quiet, 1)]
    commands.stop()
    worker.stop()
    store.close()
