"""An annotation for a trace the hub never saw is kept pending, the hub asks the device, the label joins."""

from __future__ import annotations

import time
from typing import Any

from agent.app import build_agent, record_annotation
from hub.labels.service import LabelSettings, missing_traces, run_labels
from hub.mqtt.publisher import TraceRequester
from hub.store import IngestRecord
from shared.codec import decode
from shared.messages import Annotation, Command
from shared.topics import Topics
from tests.agent.helpers import agent_settings
from tests.e2e.hubside import hub_side, watched_commands
from tests.fixtures.broker import Clients, barrier


def quiet_device(tmp_path, broker, initial_model_dir, name: str) -> tuple[Any, ...]:
    """A hub's settings, store and running ingest worker, and a device that ran 40 windows reporting only its
    anomalies (no random or low-confidence samples): (hub settings, store, worker, agent settings, agent)."""
    hub_settings, store, worker = hub_side(tmp_path, broker, name)
    settings = agent_settings(tmp_path, broker, "dev-9", initial_model_dir, sample_rate=0.0, low_confidence_per_min=0)
    agent = build_agent(settings)
    agent.run(max_windows=40, drain_s=10)
    return hub_settings, store, worker, settings, agent


def requester_watched(mqtt_clients: Clients, broker, hub_settings, store, labels) -> tuple[Any, ...]:
    """The hub's trace requester on a started command publisher, and a watcher of what the broker holds for dev-9,
    as the hub sent it: (collector, barrier topic, publisher, requester)."""
    sent, marker, commands = watched_commands(mqtt_clients, broker, hub_settings, "dev-9")
    return sent, marker, commands, TraceRequester(store, labels, commands.send)


def test_pending_annotation_is_joined_after_the_hub_asks_for_the_trace(tmp_path, broker, initial_model_dir,
                                                                      mqtt_clients: Clients):
    hub_settings, store, worker, settings, agent = quiet_device(tmp_path, broker, initial_model_dir, "pending")
    quiet = agent.db.conn.execute("SELECT trace_id FROM predictions WHERE decision = 0 LIMIT 1").fetchone()[0]
    assert worker.wait_idle(quiet_s=0.3, timeout=10)
    assert store.prediction(quiet) is None  # a quiet prediction never left the device

    annotation = Annotation(device_id="dev-9", ts=time.time(), trace_id=quiet, label="fault", fault_type="seal",
                            technician_id="tech-3")
    store.ingest_batch([IngestRecord(annotation, time.time())])
    labels = LabelSettings()
    assert [m.trace_id for m in missing_traces(store, labels, now=time.time())] == [quiet]
    assert run_labels(store, labels, now=time.time()).label_set.items == ()  # pending: not trainable yet, not lost

    sent, marker, commands, requester = requester_watched(mqtt_clients, broker, hub_settings, store, labels)
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


def test_a_range_annotation_at_the_machine_labels_the_windows_the_device_kept(tmp_path, broker, initial_model_dir,
                                                                            mqtt_clients: Clients):
    """A maintenance log's "failed between t1 and t2", made at the machine: the hub asks the device for the range's
    windows (``upload_traces`` with a range), labels every one of them, and counts the entry once against the
    device's cap."""
    hub_settings, store, worker, settings, agent = quiet_device(tmp_path, broker, initial_model_dir, "ranges")
    rows = agent.db.query("SELECT trace_id, window_end, reported FROM predictions ORDER BY window_end")
    kept = [r for r in rows if r["reported"] is None]
    assert len(kept) >= 20
    first, last = kept[5]["window_end"], kept[14]["window_end"]
    covered = {r["trace_id"] for r in rows if first <= r["window_end"] <= last}
    record_annotation(agent.db, Topics(settings.prefix), Annotation(
        device_id="dev-9", ts=time.time(), start_ts=first, end_ts=last, label="fault", fault_type="wear",
        technician_id="tech-on-site", note="failed (maintenance log)"))
    agent.db.close()
    build_agent(settings).run(duration_s=1, drain_s=10)  # the agent sends it
    assert worker.wait_for(lambda s: s.stored.get("annotation", 0) >= 1, timeout=10)
    labels = LabelSettings(max_device_votes=1)  # one entry, however many windows: within a cap of one
    before = {i.trace_id for i in run_labels(store, labels, now=time.time()).label_set.items}
    assert before < covered  # only the windows the device reported when it scored them

    sent, marker, commands, requester = requester_watched(mqtt_clients, broker, hub_settings, store, labels)
    assert requester.run(time.time()) == 1 and requester.ranges_requested == 1
    assert requester.run(time.time()) == 0  # not again before retry_s
    asked = [decode(Command, m.payload) for m in barrier(commands.client, marker, sent)]
    assert [(c.cmd, c.start_ts, c.end_ts) for c in asked] == [("upload_traces", first, last)]
    build_agent(settings).run(duration_s=2, drain_s=10)  # the device comes back and answers the command
    assert worker.wait_for(lambda s: s.stored.get("sample", 0) >= len(covered - before), timeout=10)
    run = run_labels(store, labels, now=time.time())
    later = build_agent(settings)  # every run of the agent's simulated source starts its clock over: count them all
    in_range = {r["trace_id"] for r in later.db.query(
        "SELECT trace_id FROM predictions WHERE window_end BETWEEN ? AND ?", [first, last])}
    later.db.close()
    assert covered <= {i.trace_id for i in run.label_set.items} <= in_range
    assert all(i.label == 1 for i in run.label_set.items)
    assert not [e for e in run.validation.exclusions if e.reason == "device_cap"]
    commands.stop()
    worker.stop()
    store.close()
