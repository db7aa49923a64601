"""A technician opens an alarm's trace: the hub asks the device for its raw sensor window over MQTT, the device
sends what it recorded, and the readings are exactly the window its features came from."""

from __future__ import annotations

import sqlite3
import time

import numpy as np

from agent.app import build_agent
from hub.mqtt.windows import WindowRequester
from shared.codec import decode
from shared.features import extract
from shared.messages import Command
from tests.agent.helpers import agent_settings
from tests.e2e.hubside import hub_side, watched_commands
from tests.fixtures.broker import Clients, barrier


def test_the_hub_gets_the_raw_window_of_an_alarm_from_the_device(tmp_path, broker, initial_model_dir,
                                                                 mqtt_clients: Clients):
    hub_settings, store, worker = hub_side(tmp_path, broker, "rawwin")
    settings = agent_settings(tmp_path, broker, "dev-7", initial_model_dir, sample_rate=0.0, low_confidence_per_min=0,
                              raw_windows_keep=5)
    agent = build_agent(settings)
    agent.run(max_windows=400, drain_s=10)
    db = agent.db.path
    with sqlite3.connect(db) as conn:
        alarms = [r[0] for r in conn.execute("SELECT trace_id FROM predictions WHERE decision = 1 ORDER BY id")]
        kept = [r[0] for r in conn.execute("SELECT trace_id FROM raw_windows ORDER BY ts")]
        quiet = conn.execute("SELECT trace_id FROM predictions WHERE decision = 0 LIMIT 1").fetchone()[0]
    assert len(alarms) > 5 and kept == alarms[-5:]  # a ring of the newest alarm windows, nothing else
    trace_id = kept[-1]
    with sqlite3.connect(db) as conn:
        times, readings = conn.execute("SELECT times, readings FROM raw_windows WHERE trace_id = ?",
                                       (trace_id,)).fetchone()  # what the device recorded
    assert worker.wait_for(lambda s: s.stored.get("anomaly", 0) >= len(alarms), timeout=10)
    prediction = store.prediction(trace_id)
    assert prediction is not None

    sent, marker, commands = watched_commands(mqtt_clients, broker, hub_settings, "dev-7")
    requester = WindowRequester(store, commands.send)
    requester.request("dev-7", trace_id)  # what POST /traces/{trace_id}/window does
    requester.request("dev-7", quiet)  # a quiet window: the device never kept its readings
    asked = [decode(Command, m.payload) for m in barrier(commands.client, marker, sent)]
    assert [(c.cmd, c.trace_ids) for c in asked if c.cmd == "upload_windows"] == [
        ("upload_windows", [trace_id]), ("upload_windows", [quiet])]
    assert store.raw_window(trace_id).state == "requested"  # type: ignore[union-attr]

    # the device comes back and answers; as fast as this source runs, a 5-window ring could roll over before the
    # command is read, so it comes back with a larger one (a ring too small for the alarm rate loses windows)
    larger = agent_settings(tmp_path, broker, "dev-7", initial_model_dir, sample_rate=0.0, low_confidence_per_min=0,
                            raw_windows_keep=1000)
    build_agent(larger).run(duration_s=2, drain_s=10)
    assert worker.wait_for(lambda s: s.stored.get("window", 0) >= 2, timeout=10)
    row = store.raw_window(trace_id)
    assert row is not None and row.state == "stored" and row.device_id == "dev-7"
    assert list(row.sensors) == list(agent.model.manifest.window.sensors)
    assert (row.timestamps[0], row.timestamps[-1]) == (prediction.window_start, prediction.window_end)
    assert list(row.timestamps) == np.frombuffer(times, "<f8").tolist()
    window = np.asarray(row.values).T
    assert window.tolist() == np.frombuffer(readings, "<f8").reshape(window.shape).tolist()
    # the very readings the alarm's features came from
    np.testing.assert_allclose(extract(window).astype(np.float32), np.asarray(prediction.features, np.float32),
                               rtol=1e-6)
    assert store.raw_window(quiet).state == "unavailable"  # type: ignore[union-attr]
    assert requester.run(time.time()) == 0  # nothing left to ask for
    commands.stop()
    worker.stop()
    store.close()
