"""Store-and-forward under failure: a 20 s broker outage, and SIGKILL mid-stream. Nothing is lost.

A hub ingest worker runs beside the observer: the outbox empties only when the hub acknowledges what it stored.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from agent.app import build_agent
from hub.mqtt.ingest import IngestWorker
from hub.store import open_store
from tests.agent.helpers import FAST_LIVES, agent_settings, anomaly_trace_ids, outbox_size
from tests.fixtures.broker import HUB_USER, Collector, subscribe

pytestmark = pytest.mark.slow


def _durable_hub_subscriber(broker, mqtt_clients, device):
    """A hub-side subscriber whose session (and queued messages) survive a broker restart."""
    collector = Collector()
    client = mqtt_clients.connect(broker, HUB_USER, collector=collector, client_id=f"observer-{device}",
                                  clean_start=False, session_expiry=3600, reconnect=True)
    client.reconnect_delay_set(min_delay=1, max_delay=1)
    subscribe(client, f"fleetloop/{device}/anomaly")
    return collector


def _hub(tmp_path, broker, name):
    """A real hub ingest worker (a store of its own): it acknowledges what it commits to the devices."""
    store = open_store(f"sqlite:///{tmp_path / f'{name}.db'}")
    worker = IngestWorker(host=broker.host, port=broker.port, username=HUB_USER, password=broker.password(HUB_USER),
                          store=store, share_group=name, client_id=f"{name}-ingest")
    worker.start()
    assert worker.wait_ready(10)
    return worker, store


def _stop(worker, store):
    worker.stop()
    store.close()


def _received(collector):
    return {m.json()["trace_id"] for m in collector.messages if m.topic.endswith("/anomaly")}


def test_broker_outage_of_20s_loses_no_anomaly(tmp_path, fresh_broker, mqtt_clients, initial_model_dir):
    collector = _durable_hub_subscriber(fresh_broker, mqtt_clients, "dev-3")
    hub = _hub(tmp_path, fresh_broker, "outage")
    # A message the broker acknowledged but lost (mosquitto drops what arrives for a restarted broker's offline
    # shared-subscription sessions) comes back once the hub has not acknowledged it for hub_ack_timeout_s.
    settings = agent_settings(tmp_path, fresh_broker, "dev-3", initial_model_dir, hub_ack_timeout_s=2.0,
                              source={"kind": "sim", "rate": 150, "seed": 5, "sim_config": FAST_LIVES})
    agent = build_agent(settings)
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, kwargs={"stop": stop, "drain_s": 30})
    runner.start()
    try:
        time.sleep(3)
        before_outage = anomaly_trace_ids(settings.db_path)
        fresh_broker.stop()
        outage_started = time.time()
        time.sleep(20)
        during_outage = anomaly_trace_ids(settings.db_path) - before_outage
        assert outbox_size(settings.db_path) > 0, "messages should wait in the outbox while the broker is down"
        fresh_broker.start()
        assert hub[0].wait_ready(60), "the hub's ingest worker did not reconnect"
        deadline = time.time() + 60  # until the hub has acknowledged the backlog (resent where the broker lost it)
        while time.time() < deadline and outbox_size(settings.db_path) > 0:
            time.sleep(0.2)
    finally:
        stop.set()
        runner.join(60)
        _stop(*hub)
    assert not runner.is_alive()
    assert len(during_outage) > 0, f"no anomaly was produced during the {time.time() - outage_started:.0f} s outage"
    logged = anomaly_trace_ids(settings.db_path)
    collector.wait_for(lambda msgs: _received(collector) >= logged, timeout=30)
    assert during_outage <= _received(collector)
    assert outbox_size(settings.db_path) == 0


def _agent_process(tmp_path, broker, device, model_dir, duration=None):
    config = tmp_path / f"{device}.toml"
    config.write_text(
        f'device_id = "{device}"\ndev_mode = true\ndata_dir = "{tmp_path / device}"\nmqtt_host = "{broker.host}"\n'
        f'mqtt_port = {broker.port}\ninitial_model = "{model_dir}"\nstats_interval_s = 1.0\nhub_ack_timeout_s = 2.0\n'
        f'commit_interval_s = 0.05\n[source]\nkind = "sim"\nrate = 400\nseed = 9\n'
        f'sim_config = {{ life_steps = [150, 300], degradation_tau = [30.0, 60.0] }}\n'
    )
    env = {**os.environ, "FLEETLOOP_AGENT_MQTT_PASSWORD": broker.password(device)}
    cmd = [sys.executable, "-m", "fleetloop.cli", "agent", "run", "--config", str(config)]
    if duration:
        cmd += ["--duration", str(duration)]
    log = tmp_path / f"{device}-{time.monotonic_ns()}.log"
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    proc.log = log  # type: ignore[attr-defined]
    return proc


def test_sigkill_mid_stream_then_restart_loses_nothing(tmp_path, fresh_broker, mqtt_clients, initial_model_dir):
    device = "dev-4"
    db_path = tmp_path / device / "agent.db"
    collector = _durable_hub_subscriber(fresh_broker, mqtt_clients, device)
    hub = _hub(tmp_path, fresh_broker, "sigkill")
    proc = _agent_process(tmp_path, fresh_broker, device, initial_model_dir)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not (db_path.exists() and len(anomaly_trace_ids(db_path)) >= 3):
            time.sleep(0.2)
        fresh_broker.stop()  # let the outbox fill, so the kill lands with messages still to send
        deadline = time.time() + 30
        while time.time() < deadline and outbox_size(db_path) < 5:
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    pending = outbox_size(db_path)
    assert pending >= 5
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    logged_before_kill = anomaly_trace_ids(db_path)

    fresh_broker.start()
    assert hub[0].wait_ready(60), "the hub's ingest worker did not reconnect"
    restarted = _agent_process(tmp_path, fresh_broker, device, initial_model_dir, duration=4)
    try:
        restarted.wait(timeout=60)
    finally:
        _stop(*hub)
    assert restarted.returncode == 0, restarted.log.read_text()[-2000:]
    logged = anomaly_trace_ids(db_path)
    assert logged_before_kill <= logged
    collector.wait_for(lambda msgs: _received(collector) >= logged, timeout=30)
    assert outbox_size(db_path) == 0
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
