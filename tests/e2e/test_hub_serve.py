"""`fleetloop hub serve` as a real process: API with roles, ingest from a real agent, metrics, clean stop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from agent.app import build_agent
from fleetloop.devbroker import free_port
from hub.registry.signing import SigningKey
from tests.agent.helpers import agent_settings
from tests.fixtures.broker import HUB_USER

pytestmark = pytest.mark.slow
TECH, VIEWER = "t" * 24, "v" * 24


def _wait_healthy(url: str, proc: subprocess.Popen, log) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("hub did not become healthy:\n" + log.read_text()[-3000:])


def test_hub_serve_end_to_end(tmp_path, broker, initial_model_dir):
    port = free_port()
    key_file = tmp_path / "keys" / "signing.pem"
    key_file.parent.mkdir()
    SigningKey.create(key_file)  # outside dev mode the operator provisions the key; the hub never invents one
    env = {**os.environ, "FLEETLOOP_HUB_SIGNING_KEY_FILE": str(key_file),
           "FLEETLOOP_HUB_MQTT_PASSWORD": broker.password(HUB_USER),
           "FLEETLOOP_HUB_TOKENS": json.dumps({TECH: "technician", VIEWER: "viewer"}),
           "FLEETLOOP_HUB_SHARE_GROUP": "serve-test", "FLEETLOOP_HUB_INGEST_CLIENT_ID": "serve-test"}
    log = tmp_path / "hub.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetloop.cli", "hub", "serve", "--data-dir", str(tmp_path / "hub"),
             "--mqtt-host", broker.host, "--mqtt-port", str(broker.port), "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        agent = build_agent(agent_settings(tmp_path, broker, "dev-0", initial_model_dir))
        agent.run(max_windows=300, drain_s=10)
        anomaly = agent.db.conn.execute("SELECT trace_id FROM predictions WHERE decision = 1 LIMIT 1").fetchone()[0]

        tech = {"Authorization": f"Bearer {TECH}"}
        deadline = time.time() + 15
        while httpx.get(f"{url}/traces/{anomaly}", headers=tech).status_code != 200 and time.time() < deadline:
            time.sleep(0.2)
        trace = httpx.get(f"{url}/traces/{anomaly}", headers=tech).json()
        assert trace["prediction"]["device_id"] == "dev-0"
        created = httpx.post(f"{url}/annotations", headers=tech, json={
            "trace_id": anomaly, "label": "fault", "fault_type": "bearing", "technician_id": "tech-1"})
        assert created.status_code == 201, created.text
        viewer = {"Authorization": f"Bearer {VIEWER}"}
        refused = httpx.post(f"{url}/annotations", headers=viewer, json={
            "trace_id": anomaly, "label": "fault", "technician_id": "tech-1"})
        assert refused.status_code == 403
        assert httpx.get(f"{url}/queue").status_code == 401
        bad = httpx.post(f"{url}/annotations", headers=tech, json={"trace_id": anomaly, "label": "broken"})
        assert bad.status_code == 422
        devices = httpx.get(f"{url}/devices", headers=viewer).json()
        assert any(d["device_id"] == "dev-0" for d in devices)
        metrics = httpx.get(f"{url}/metrics").text
        known = re.search(r"^fleetloop_hub_devices_known ([0-9.]+)$", metrics, re.M)
        # the session broker holds retained statuses of other tests' devices too: at least dev-0 is known
        assert known and float(known.group(1)) >= 1
        assert re.search(r'^fleetloop_hub_ingested_messages_total\{kind="anomaly"\} [1-9]', metrics, re.M), metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0, log.read_text()[-3000:]


def test_hub_refuses_to_start_without_a_signing_key_outside_dev_mode(tmp_path):
    env = {**os.environ, "FLEETLOOP_HUB_MQTT_PASSWORD": "x" * 20,
           "FLEETLOOP_HUB_TOKENS": json.dumps({"k" * 20: "viewer"})}
    out = subprocess.run([sys.executable, "-m", "fleetloop.cli", "hub", "serve", "--data-dir", str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert "signing_key_file" in out.stderr


def test_hub_refuses_to_start_without_tokens_outside_dev_mode(tmp_path):
    out = subprocess.run([sys.executable, "-m", "fleetloop.cli", "hub", "serve", "--data-dir", str(tmp_path)],
                         env={**os.environ, "FLEETLOOP_HUB_MQTT_PASSWORD": "x" * 20}, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 2
    assert "no API tokens" in out.stderr
