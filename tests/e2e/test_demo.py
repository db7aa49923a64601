"""`fleetloop demo` end to end, run as a user would: a real mosquitto, the hub and its API, agent processes,
simulated technicians, and the whole story; Ctrl-C; the one-line errors."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from hub.gate.verdict import GateConfig

REPO = Path(__file__).resolve().parents[2]
RECALL_MARGIN = 0.15  # the loop's recall over a frozen v1's, on the drifted devices' windows after the fix
FAR_SLACK = 0.02  # false alarms the fix may add over the frozen v1's on those windows, plus the gate's own trade:
# `far_per_recall_gain` × the recall it gained (a frozen v1 that barely alarms after drift is blind, not careful:
# README, gate). Measured under realistic labels: 0.001-0.045 over 22 runs, recall gains 0.13-0.54; on 2026-12-06
# 0.0553 and 0.0589 in 2 of 9 runs (one on the code before that day's changes), both with a recall gain of 0.58,
# where the gate's trade allows 0.078. An absolute 0.05 on top was tighter than anything the gate promises.
DEMO = [sys.executable, "-m", "fleetloop.cli", "demo"]
log = logging.getLogger(__name__)


def leftovers(workdir: Path) -> list[str]:
    """Processes (agents, mosquitto) still running with a path inside `workdir` on their command line."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if str(workdir) in cmdline:
            found.append(f"{proc.info['pid']}: {cmdline}")
    return found


def summary_of(stdout: str) -> dict[str, Any]:
    return dict(json.loads(stdout.splitlines()[-1]))


def kinds(summary: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in summary["timeline"]]


def first(summary: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(e for e in summary["timeline"] if e["kind"] == kind)


def kept_console(proc: subprocess.Popen[str], out: Path, err: Path, workdir: Path) -> None:
    """With --keep, after the story: the console answers (an operator signs in with the printed token and sees the
    fleet online), the agents still run; then a terminal's Ctrl-C."""
    deadline = time.monotonic() + 280
    while "keep running (--keep)" not in out.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()[-5000:]
        time.sleep(0.5)
    found = re.search(r"console: (\S+)\s+\(sign in with the operator token (\S+);", out.read_text())
    assert found is not None, out.read_text()
    url, token = found.groups()
    with httpx.Client(timeout=30) as client:
        page = client.get(f"{url}/sign-in")
        nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
        assert page.status_code == 200 and nonce is not None
        signed = client.post(f"{url}/sign-in", data={"token": token, "who": "newcomer", "nonce": nonce.group(1)})
        assert signed.status_code == 303, signed.text
        assert "4 of 4 devices online" in client.get(f"{url}/fleet").text
    assert len([p for p in leftovers(workdir) if "agent run" in p]) == 4
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)


@pytest.mark.slow
def test_fast_demo_tells_the_whole_story_keeps_its_console_and_leaves_nothing_running(tmp_path: Path) -> None:
    started = time.monotonic()
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    with out.open("w") as out_file, err.open("w") as err_file:
        proc = subprocess.Popen([*DEMO, "--fast", "--keep", "--workdir", str(tmp_path), "--json"], stdout=out_file,
                                stderr=err_file, text=True, cwd=REPO, process_group=0)
    try:
        kept_console(proc, out, err, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wall = time.monotonic() - started
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out.read_text(), err.read_text())
    assert done.returncode == 0, done.stderr[-5000:]
    s = summary_of(done.stdout)
    log.info("fleetloop demo --fast: %.1f s wall; drift detected %.1f s after the injection; recall %s -> %s "
             "(frozen v1 after: %s); drift -> recovered %.1f s; after-fix windows %s", wall,
             s["drift_detected_after_s"], s["recall_before"], s["recall_after"], s["recall_frozen_after"],
             s["drift_to_recovered_s"], s["accuracy"]["periods"]["after_fix"]["served"])

    # the story happened, in order
    assert s["drift_detected"] and s["failed"] is None and not s["interrupted"]
    assert {f.split(".")[0] for f in s["drift_features"]} == {"vibration"}  # the recalibrated sensor, only
    assert s["promoted_version"] == s["candidate"] and s["gate"]["verdict"] == "pass"
    assert s["candidate"] not in s["blocked_candidates"]  # a first fix the gate blocked is retried on more labels
    assert s["bad_candidate_rejected"] and s["bad_gate"]["verdict"] == "fail" and s["bad_version"] != s["candidate"]
    assert s["canary_rolled_back"] and s["nan_version"] == "nan-1"
    # the README's claim: on the drifted devices, after the fix, the loop's model catches failures a frozen v1
    # misses on the very same windows, without buying it with false alarms
    after = s["accuracy"]["drifted_devices"]["after_fix"]
    served, frozen = after["served"], after["frozen"]
    assert served["n_pos"] >= 50 and served["n_neg"] >= 200, after
    assert served["recall"] >= frozen["recall"] + RECALL_MARGIN, after
    gained = served["recall"] - frozen["recall"]
    assert served["far"] <= frozen["far"] + FAR_SLACK + GateConfig().far_per_recall_gain * gained, after
    # v1's drift reference is the product's re-take, by the operator through the API, with own baselines
    assert s["reference"]["actor"] == "operator:ana" and s["reference"]["device_baselines"], s["reference"]
    # the drift is located at the product's threshold and sample minimum: the drifted devices, and only they
    located = s["drift_located"]
    log.info("drift located on %s (drifted: %s), cohorts %s; every scope ever flagged: %s", located["devices"],
             s["drifted_devices"], located["cohorts"], located["flagged"])
    assert located["devices"] == s["drifted_devices"], located
    assert {c for c in located["cohorts"]} == {c for c in s["cohorts"] if c.startswith(s["drift_site"])}, located
    assert s["drift_to_recovered_s"] > s["drift_detected_after_s"] > 0
    order = ["drift_injected", "reference_taken", "drift_detected", "retrain_started", "gate", "rollout_started",
             "stage", "rollout_completed", "recovered", "rollout_refused", "rollback", "restored"]
    at = {k: first(s, k)["t"] for k in order}
    assert [k for k in order if k != "rollout_refused"] == sorted(
        (k for k in order if k != "rollout_refused"), key=lambda k: (at[k], order.index(k)))
    assert first(s, "stage")["data"]["stage"] == "fleet" and first(s, "rollback")["data"]["version"] == "nan-1"
    assert first(s, "rollout_refused")["data"]["status"] == 409
    # the drift reached some devices of one site only; two cohorts at least
    assert 0 < len(s["drifted_devices"]) < s["devices"] and len(s["cohorts"]) >= 2
    accuracy = s["accuracy"]["drifted_devices"]
    assert accuracy["before_fix"]["served"]["recall"] < accuracy["healthy"]["served"]["recall"]

    # everything stopped cleanly; the report is there and self-contained
    assert s["agents_ok"] and s["hub_job_failures"] == 0
    report = Path(s["report"])
    assert report == tmp_path / "report.html" and Path(s["accuracy_png"]).read_bytes()[:4] == b"\x89PNG"
    text = report.read_text()
    assert text.count("src='data:image/png;base64,") == 3 and not re.search(r"(src|href)=['\"]?(https?:)?//", text)
    assert "fleetloop demo: the story in numbers" in done.stdout and f"report: {report}" in done.stdout
    assert done.stdout.startswith("A bad sensor recalibration on site-a was detected")  # the headline opens it
    assert "FAR" not in done.stdout and "+/" not in done.stdout and "+/" not in done.stderr
    assert "fleet drift detected" in done.stderr and "online 4/4" in done.stderr
    assert s["console"].endswith("/console") and "Traceback" not in done.stderr
    stamps = [float(t) for t in re.findall(r"fleetloop\.story: t\+([0-9.]+)s  (?!\[)", done.stderr)]
    assert stamps and stamps == sorted(stamps)  # the live lines on one clock, in order
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_ctrl_c_stops_agents_hub_and_broker_cleanly(tmp_path: Path) -> None:
    """A terminal's Ctrl-C goes to the whole foreground process group; the demo still stops in order."""
    err_path = tmp_path / "demo.err"
    workdir = tmp_path / "w"
    with err_path.open("w") as err:
        proc = subprocess.Popen([*DEMO, "--fast", "--workdir", str(workdir), "--json"], stdout=subprocess.PIPE,
                                stderr=err, text=True, cwd=REPO, process_group=0)
    try:
        deadline = time.monotonic() + 120
        while "healthy operation" not in err_path.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, err_path.read_text()[-3000:]
            time.sleep(0.2)
        assert len([p for p in leftovers(workdir) if "agent run" in p]) == 4
        os.killpg(proc.pid, signal.SIGINT)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err_path.read_text()[-3000:]
    s = summary_of(stdout)
    assert s["interrupted"] and s["report"] is None
    assert s["agent_exit_codes"] and all(code == 0 for code in s["agent_exit_codes"].values())  # SIGTERM, drained
    assert "Traceback" not in err_path.read_text()
    assert leftovers(workdir) == []


def test_missing_mosquitto_is_a_one_line_error(tmp_path: Path) -> None:
    env = {**os.environ, "FLEETLOOP_MOSQUITTO": str(tmp_path / "no-mosquitto")}
    done = subprocess.run([*DEMO, "--workdir", str(tmp_path / "w")], capture_output=True, text=True, env=env,
                          timeout=60, cwd=REPO, check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"fleetloop demo: error: FLEETLOOP_MOSQUITTO={tmp_path / 'no-mosquitto'} "
                                        "is not an executable file"]


@pytest.mark.parametrize("option", ["--port", "--api-port"])
def test_a_busy_port_is_a_one_line_error(tmp_path: Path, option: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([*DEMO, option, str(port), "--workdir", str(tmp_path / "w")], capture_output=True,
                              text=True, timeout=60, cwd=REPO, check=False)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"fleetloop demo: error: port {port} on 127.0.0.1 is busy")
    assert leftovers(tmp_path) == []


def test_too_few_devices_is_a_one_line_error(tmp_path: Path) -> None:
    done = subprocess.run([*DEMO, "--devices", "2", "--workdir", str(tmp_path / "w")], capture_output=True,
                          text=True, timeout=60, cwd=REPO, check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["fleetloop demo: error: --devices must be at least 3 (two cohorts, one of "
                                        "them drifting)"]
