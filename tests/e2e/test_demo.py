"""`fleetloop demo` end to end: a real mosquitto, the initial recipe and agent processes, run as a user would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = [sys.executable, "-m", "fleetloop.cli", "demo"]


def leftovers(workdir: Path) -> list[str]:
    """Processes (agents, mosquitto) still running with a path inside `workdir` on their command line."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(workdir) in cmdline:
            found.append(f"{proc.info['pid']}: {cmdline}")
    return found


def summary_of(stdout: str) -> dict[str, Any]:
    return dict(json.loads(stdout.splitlines()[-1]))


@pytest.mark.slow
def test_fast_demo_runs_a_fleet_and_leaves_nothing_running(tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run([*DEMO, "--fast", "--workdir", str(tmp_path), "--json"], capture_output=True, text=True,
                          timeout=180, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    assert time.monotonic() - started < 90

    summary = summary_of(done.stdout)
    devices = summary["devices"]
    assert sorted(devices) == ["dev-0", "dev-1", "dev-2"]
    assert summary["devices_ever_online"] == 3 and all(d["ever_online"] for d in devices.values())
    assert summary["stopped_by"] == "duration" and summary["ok"]
    assert summary["peak_predictions_per_s"] > 10
    assert summary["windows"] > 300 and summary["anomalies"] > 0 and summary["samples"] > 0
    assert summary["rejected_messages"] == 0
    for device, row in devices.items():
        # the hub side saw every window (through stats) and every anomaly the agent logged
        agent = row["agent"]
        assert row["exit_code"] == 0 and row["model_version"] == "v1", device
        assert row["windows"] == agent["windows"] > 0 and row["anomalies"] == agent["anomalies"], device
        assert row["model_events"][0] == "loaded:v1" and not row["online"], device
    assert {(d["site"], d["asset_type"]) for d in devices.values()} == {
        ("site-a", "pump"), ("site-b", "compressor"), ("site-a", "fan")}

    table = done.stdout.splitlines()
    assert table[0].split() == ["device", "cohort", "windows", "anomalies", "samples", "model", "online", "exit"]
    assert [line.split()[0] for line in table[1:4]] == ["dev-0", "dev-1", "dev-2"]
    assert "online 3/3" in done.stderr and "predictions/s" in done.stderr
    assert "building the initial model" in done.stderr

    assert leftovers(tmp_path) == []
    for row in devices.values():
        assert not psutil.pid_exists(row["pid"]) or str(tmp_path) not in " ".join(psutil.Process(row["pid"]).cmdline())


@pytest.mark.slow
def test_ctrl_c_stops_agents_then_broker_cleanly(tmp_path: Path) -> None:
    """A terminal's Ctrl-C goes to the whole foreground process group; the demo still stops in order."""
    err_path = tmp_path / "demo.err"
    with err_path.open("w") as err:
        proc = subprocess.Popen([*DEMO, "--fast", "--duration", "300", "--workdir", str(tmp_path / "w"), "--json"],
                                stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO, process_group=0)
    try:
        deadline = time.monotonic() + 90
        while "online 3/3" not in err_path.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, err_path.read_text()[-3000:]
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err_path.read_text()[-3000:]
    summary = summary_of(stdout)
    assert summary["stopped_by"] == "interrupted" and summary["ok"] and summary["elapsed_s"] < 60
    for device, row in summary["devices"].items():
        # the broker outlived the agents: their final stats and offline status reached the hub side
        assert row["ever_online"] and not row["online"] and row["windows"] == row["agent"]["windows"], device
    assert leftovers(tmp_path) == []


def test_missing_mosquitto_is_a_one_line_error(tmp_path: Path) -> None:
    env = {**os.environ, "FLEETLOOP_MOSQUITTO": str(tmp_path / "no-mosquitto")}
    done = subprocess.run([*DEMO, "--workdir", str(tmp_path / "w")], capture_output=True, text=True, env=env,
                          timeout=60, cwd=REPO, check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"fleetloop demo: error: FLEETLOOP_MOSQUITTO={tmp_path / 'no-mosquitto'} "
                                        "is not an executable file"]


def test_busy_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([*DEMO, "--port", str(port), "--workdir", str(tmp_path / "w")], capture_output=True,
                              text=True, timeout=60, cwd=REPO, check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith(f"fleetloop demo: error: port {port} on 127.0.0.1 is busy")
    assert len(done.stderr.splitlines()) == 1
    assert leftovers(tmp_path) == []
