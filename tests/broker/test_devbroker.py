"""DevBroker on a real mosquitto: persistence across a restart, adding devices, rendering, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from fleetloop.devbroker import DevBroker, free_port, mqtt_connack, render_acl, render_config
from shared.errors import ConfigError
from shared.topics import Kind, Topics
from tests.fixtures.broker import Clients, Collector, publish, session_present, subscribe

REPO = Path(__file__).resolve().parents[2]


def test_queued_qos1_messages_survive_a_broker_restart(fresh_broker: DevBroker, mqtt_clients: Clients) -> None:
    topic = Topics(fresh_broker.prefix).topic("dev-0", Kind.ANOMALY)
    client_id = f"hub-worker-{uuid.uuid4().hex[:8]}"
    sub = mqtt_clients.connect(fresh_broker, "hub", client_id=client_id, clean_start=False,
                               session_expiry=3600)
    subscribe(sub, topic)
    mqtt_clients.close(sub)

    device = mqtt_clients.connect(fresh_broker, "dev-0")
    sent = [f"m{i}".encode() for i in range(50)]
    for body in sent:
        publish(device, topic, body)  # queued for the offline subscriber
    mqtt_clients.close(device)

    port = fresh_broker.port
    fresh_broker.stop()
    assert not fresh_broker.running
    fresh_broker.start()
    assert fresh_broker.port == port

    seen = Collector()
    sub = mqtt_clients.connect(fresh_broker, "hub", client_id=client_id, clean_start=False,
                               session_expiry=3600, collector=seen)
    assert session_present(sub)
    assert [m.payload for m in seen.wait_count(len(sent))] == sent


def test_add_device_reloads_a_running_broker(broker: DevBroker, mqtt_clients: Clients) -> None:
    topics = Topics(broker.prefix)
    seen = Collector()
    hub = mqtt_clients.connect(broker, "hub", collector=seen)  # stays connected across the reload
    subscribe(hub, topics.all_devices(Kind.STATUS))
    device_id = f"new-{uuid.uuid4().hex[:8]}"
    assert mqtt_connack(broker.host, broker.port, device_id, "anything") != 0

    password = broker.add_device(device_id)

    assert broker.add_device(device_id) == password  # idempotent
    with pytest.raises(ConfigError, match="hub"):
        broker.add_device("hub")
    assert broker.credentials[device_id] == password
    device = mqtt_clients.connect(broker, device_id)
    publish(device, topics.topic(device_id, Kind.STATUS), b"online")
    seen.wait_for(lambda msgs: topics.topic(device_id, Kind.STATUS) in [m.topic for m in msgs])


def test_credentials_are_private_and_reused_on_the_same_workdir(tmp_path: Path) -> None:
    first = DevBroker(tmp_path, devices=["dev-a"])
    saved = first.credentials
    first.start()
    try:
        creds = first.credentials_path
        assert creds.stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "passwd").stat().st_mode & 0o777 == 0o600
        data = json.loads(creds.read_text())
        assert (data["port"], data["users"]) == (first.port, saved)
        assert saved["dev-a"] not in (tmp_path / "passwd").read_text()  # hashed
    finally:
        first.stop()
    again = DevBroker(tmp_path)
    assert (again.credentials, again.port) == (saved, first.port)


def test_busy_port_is_one_clear_error(broker: DevBroker, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"port {broker.port} on 127.0.0.1 is busy"):
        DevBroker(tmp_path, port=broker.port).start()


def test_missing_mosquitto_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLEETLOOP_MOSQUITTO", str(tmp_path / "no-such-mosquitto"))
    with pytest.raises(ConfigError, match="FLEETLOOP_MOSQUITTO"):
        DevBroker(tmp_path)


def test_render_points_everything_into_the_workdir(tmp_path: Path) -> None:
    conf = render_config((REPO / "mosquitto" / "mosquitto.conf").read_text(), port=12345, workdir=tmp_path)
    lines = set(conf.splitlines())
    assert "listener 12345 127.0.0.1" in lines
    assert {"allow_anonymous false", f"password_file {tmp_path}/passwd", f"acl_file {tmp_path}/acl",
            f"persistence_location {tmp_path}/data", f"log_dest file {tmp_path}/mosquitto.log",
            "max_queued_messages 200000", "max_queued_bytes 268435456"} <= lines
    settings = [line for line in conf.splitlines() if line.strip() and not line.startswith("#")]
    assert not [line for line in settings if "/mosquitto/" in line or line.startswith("log_dest stdout")]
    with pytest.raises(ConfigError, match="password_file"):
        render_config("listener 1883\nallow_anonymous false\n", port=1, workdir=tmp_path)


def test_render_acl_substitutes_the_prefix() -> None:
    acl = render_acl((REPO / "mosquitto" / "acl").read_text(), "acme/plant-1")
    assert "pattern write acme/plant-1/%u/anomaly" in acl
    assert "topic readwrite acme/plant-1/#" in acl
    assert "topic read $share/+/acme/plant-1/#" in acl
    assert "fleetloop/" not in "\n".join(line for line in acl.splitlines() if not line.startswith("#"))


def test_cli_runs_in_the_foreground_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetloop.cli", "broker", "run", "--port", str(port), "--devices",
         "dev-a,dev-b", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
    )
    try:
        creds = tmp_path / "credentials.json"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if creds.exists() and (tmp_path / "mosquitto.log").exists() and proc.poll() is None:
                users = json.loads(creds.read_text())["users"]
                try:
                    if mqtt_connack("127.0.0.1", port, "dev-b", users["dev-b"]) == 0:
                        break
                except OSError:
                    pass
            time.sleep(0.05)
        else:
            pytest.fail("the dev broker did not come up")
        assert proc.stdout is not None
        output = ""
        while "Ctrl-C" not in output:  # the CLI has reported where everything is
            line = proc.stdout.readline()
            assert line, f"the CLI exited early: {output}"
            output += line
        proc.send_signal(signal.SIGINT)
        output += proc.communicate(timeout=10)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    assert f"127.0.0.1:{port}" in output and str(creds) in output
    assert users["hub"] not in output and users["dev-a"] not in output
    with pytest.raises(OSError):
        mqtt_connack("127.0.0.1", port, "dev-b", users["dev-b"], timeout=0.5)
