"""SIGKILL during a model download and right after a swap: the device always comes back on a verified model."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.db import AgentDB
from agent.models.store import ModelStore
from shared.codec import encode
from tests.agent.models.test_manager import approve, assignment, build_versions, has_event, pack
from tests.fixtures.broker import HUB_USER, Collector, publish, subscribe

pytestmark = pytest.mark.slow

DEVICE = "asg-kill"


class SlowArtifact:
    """Serves one artifact; the first response stops half-way until `gate` is set."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.half_sent = threading.Event()
        self.gate = threading.Event()
        artifact = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(artifact.body)))
                self.end_headers()
                half = len(artifact.body) // 2
                try:
                    self.wfile.write(artifact.body[:half])
                    self.wfile.flush()
                    artifact.half_sent.set()
                    artifact.gate.wait(30)
                    self.wfile.write(artifact.body[half:])
                except OSError:
                    pass  # the agent was killed mid-download

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/models/v2/artifact"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


def _agent(tmp_path, broker, model_dir, pub, *, health_windows, duration=None):
    config = tmp_path / "agent.toml"
    config.write_text(
        f'device_id = "{DEVICE}"\ndata_dir = "{tmp_path / DEVICE}"\nmqtt_host = "{broker.host}"\n'
        f'mqtt_port = {broker.port}\ninitial_model = "{model_dir}"\nmodel_public_key = "{pub}"\n'
        f'health_windows = {health_windows}\nstats_interval_s = 1.0\ncommit_interval_s = 0.05\n'
        f'[source]\nkind = "sim"\nrate = 400\nseed = 3\n'
    )
    env = {**os.environ, "FLEETLOOP_AGENT_MQTT_PASSWORD": broker.password(DEVICE)}
    cmd = [sys.executable, "-m", "fleetloop.cli", "agent", "run", "--config", str(config)]
    if duration:
        cmd += ["--duration", str(duration)]
    log = tmp_path / f"agent-{time.monotonic_ns()}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    proc.log = log  # type: ignore[attr-defined]
    return proc


def _kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL


def _db_state(db_path):
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return dict(conn.execute("SELECT key, value FROM state").fetchall())
    finally:
        conn.close()


def test_sigkill_mid_download_and_mid_health_check(tmp_path, broker, mqtt_clients, initial_model_dir):
    versions = build_versions(tmp_path / "versions", initial_model_dir)
    pub = versions.key.export_public_key(tmp_path / "hub.pub")
    broker.add_device(DEVICE)
    events = Collector()
    hub = mqtt_clients.connect(broker, HUB_USER, collector=events)
    subscribe(hub, f"fleetloop/{DEVICE}/model/event")
    artifact = SlowArtifact(pack(versions.v2))
    model_dir, db_path = tmp_path / DEVICE / "models", tmp_path / DEVICE / "agent.db"
    signed = approve(assignment(versions.v2, url=artifact.url), versions.key, DEVICE)
    publish(hub, f"fleetloop/{DEVICE}/model/assign", encode(signed), retain=True)
    try:
        # 1. killed while the artifact is half downloaded: v1 still active, a partial download in staging
        proc = _agent(tmp_path, broker, versions.v1, pub, health_windows=10)
        try:
            assert artifact.half_sent.wait(30), proc.log.read_text()[-2000:]
            partial = model_dir / ".staging"
            deadline = time.monotonic() + 10
            while not any(p.stat().st_size for p in partial.glob("fetch.*/artifact.tar.gz")):
                assert time.monotonic() < deadline, "no partial download on disk"
                time.sleep(0.02)
        finally:
            _kill(proc)
        assert _db_state(db_path)["model.active"] == "v1"
        assert (model_dir / ".staging").exists() and "v2" not in os.listdir(model_dir)
        artifact.gate.set()

        # 2. restarted: staging cleaned, the download completes, v2 swapped in; killed during its health check
        proc = _agent(tmp_path, broker, versions.v1, pub, health_windows=100_000)
        try:
            events.wait_for(has_event("swapped", "v2"), timeout=30)
        finally:
            _kill(proc)
        state = _db_state(db_path)
        assert (state["model.active"], state["model.previous"], state["model.health_pending"]) == ("v2", "v1", "v2")

        # 3. restarted again: it serves v2 (verified on load), resumes the health check and passes it
        proc = _agent(tmp_path, broker, versions.v1, pub, health_windows=20, duration=4)
        assert proc.wait(60) == 0, proc.log.read_text()[-2000:]
        events.wait_for(has_event("health_ok", "v2"), timeout=10)
    finally:
        publish(hub, f"fleetloop/{DEVICE}/model/assign", b"", retain=True)
        artifact.close()
    state = _db_state(db_path)
    assert (state["model.active"], state["model.previous"]) == ("v2", "v1") and "model.health_pending" not in state
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".") and any(p.iterdir())]
    store = ModelStore(model_dir, AgentDB(db_path), verifier=versions.key.verifier())
    assert store.load("v2").version == "v2" and store.versions() == ["v1", "v2"]
    swaps = {m.json()["msg_id"] for m in events.messages if m.json()["event"] == "swapped"}
    assert len(swaps) == 1  # the restarts did not swap again (a resent event keeps its msg_id: at least once)
    conn = sqlite3.connect(db_path)
    last = conn.execute("SELECT model_version FROM predictions ORDER BY id DESC LIMIT 1").fetchone()[0]
    conn.close()
    assert last == "v2"
