"""`fleetloop hub …` operator commands are clients of the running hub (issue 11 #1, #3, #8).

A production hub (`fleetloop hub serve`, not in dev mode: tokens per role, a provisioned signing key, the ACL
broker) and two agents; the CLI runs as an operator runs it, as a process (or through `main()`), pointed at
the hub by `FLEETLOOP_HUB_URL` and a token, and the tests read its output and exit codes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetloop.cli import main
from fleetloop.devbroker import DevBroker, free_port
from shared.codec import decode
from shared.manifest import MANIFEST_FILE, MODEL_FILE
from shared.messages import Assign
from tests.field.harness import FieldFleet, fleetloop
from tests.fixtures.broker import HUB_USER, Collector, close_client, connect_client, publish, subscribe

pytestmark = pytest.mark.slow

DEVICES = ("cli-a", "cli-b")
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, broker: DevBroker, initial_model_dir: Path) -> Iterator[FieldFleet]:
    """A production hub with v1 active and two agents serving it, online at the hub."""
    fleet = FieldFleet(tmp_path_factory.mktemp("cli-fleet"), broker, initial_model_dir)
    try:
        fleet.start_hub()
        for device in DEVICES:
            fleet.start_agent(device)
        fleet.wait(lambda: _online(fleet) >= set(DEVICES), "both agents online at the hub")
        yield fleet
    finally:
        fleet.close()


def _online(fleet: FieldFleet) -> set[str]:
    with fleet.api("viewer") as viewer:
        return {d["device_id"] for d in viewer.get("/devices").json() if d["online"]}


@pytest.fixture
def as_operator(fleet: FieldFleet, monkeypatch: pytest.MonkeyPatch) -> FieldFleet:
    """`main(["hub", …])` in this process talks to the fleet's hub with the operator token."""
    for key in [k for k in os.environ if k.startswith("FLEETLOOP_HUB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("FLEETLOOP_HUB_URL", fleet.url)
    monkeypatch.setenv("FLEETLOOP_HUB_TOKEN", fleet.tokens["operator"])
    return fleet


def version_copy(fleet: FieldFleet, version: str) -> Path:
    """v1's model under another version name, unsigned (the registry signs it)."""
    out = fleet.root / "versions" / version
    out.mkdir(parents=True)
    shutil.copyfile(fleet.hub_dir / "models" / "v1" / MODEL_FILE, out / MODEL_FILE)
    manifest = json.loads((fleet.hub_dir / "models" / "v1" / MANIFEST_FILE).read_text())
    (out / MANIFEST_FILE).write_text(json.dumps(manifest | {"version": version}, indent=1))
    return out


# -- reads: tables with headers, ISO times, --json --------------------------------------------------------------
def test_devices_and_models_are_tables_with_iso_times(as_operator: FieldFleet,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hub", "devices"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["DEVICE", "PRESENCE", "MODEL", "SHADOW", "COHORT", "LAST", "SEEN", "AGENT"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(DEVICES) <= set(rows)
    assert rows["cli-a"][1] == "online" and rows["cli-a"][2] == "v1"
    assert re.search(ISO, " ".join(rows["cli-a"]))

    assert main(["hub", "devices", "--json"]) == 0
    assert {d["device_id"] for d in json.loads(capsys.readouterr().out)} >= set(DEVICES)

    assert main(["hub", "models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["VERSION", "STATUS", "GATE"]
    assert any(line.split()[:2] == ["v1", "active"] for line in lines[1:])
    assert main(["hub", "models", "v1"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("v1  active") and "audit:" in shown and "provision" in shown


def test_dead_letters_come_from_the_hub_api(as_operator: FieldFleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet = as_operator
    client = connect_client(fleet.broker, "cli-b", fleet.broker.password("cli-b"))
    try:
        publish(client, "fleetloop/cli-b/stats", b"{not json", qos=1)
    finally:
        close_client(client)

    def listed() -> bool:
        assert main(["hub", "dead-letters", "--json"]) == 0
        return any(r["device_id"] == "cli-b" for r in json.loads(capsys.readouterr().out)["latest"])

    fleet.wait(listed, "the refused message among the hub's dead letters")
    assert main(["hub", "dead-letters", "--limit", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("by reason: ") and out[1].split()[:4] == ["TIME", "REASON", "DEVICE", "TOPIC"]
    assert any("cli-b" in line and "fleetloop/cli-b/stats" in line for line in out[2:])


# -- problem 1: a rollout from the CLI reaches the devices the hub serves ----------------------------------------
def test_a_rollout_started_from_the_cli_reaches_the_hubs_devices(fleet: FieldFleet) -> None:
    """Issue 11 #1: `hub rollout start` opened its own MQTT connection from its own settings and published the
    retained assignments to another broker; the devices never got them. Here the CLI's environment names
    another broker, as a shell with stale settings does: the rollout must still go through the hub."""
    fleet.submit_model(version_copy(fleet, "v2"), "cli test: no labels to gate it on", skip_gate=True)
    watcher = Collector()
    client = connect_client(fleet.broker, HUB_USER, fleet.broker.password(HUB_USER), collector=watcher)
    try:
        subscribe(client, "fleetloop/cli-a/model/assign")
        stale = {"FLEETLOOP_HUB_MQTT_PORT": str(free_port()), "FLEETLOOP_HUB_DATA_DIR": str(fleet.hub_dir),
                 **{k: v for k, v in fleet.hub_env().items() if k.startswith("FLEETLOOP_HUB_")}}
        out = fleet.hub_cli("rollout", "start", "v2", "--canary", "cli-a", "--reason", "cli test", check=False,
                            **stale)
        assert out.returncode == 0, out.stderr
        assert "rollout ro-" in out.stdout and "v2 over v1, running, stage canary" in out.stdout
        assert re.search(rf"decision  assign: .+ \({ISO}\)", out.stdout), out.stdout  # the live decision, in words
        got = watcher.wait_for(lambda ms: any(decode(Assign, m.payload).version == "v2" for m in ms), timeout=30)
        assert decode(Assign, got[-1].payload).device_id == "cli-a"
    finally:
        close_client(client)
    # the device loads it and says so: the loop is closed through the hub, not beside it
    def serving_v2() -> bool:
        devices = json.loads(fleet.hub_cli("devices", "--json").stdout)
        return any(d["device_id"] == "cli-a" and d["model_version"] == "v2" for d in devices)

    fleet.wait(serving_v2, "cli-a to report v2", timeout=90)
    listed = fleet.hub_cli("rollout", "list").stdout.splitlines()
    assert listed[0].split()[:5] == ["ID", "CANDIDATE", "OVER", "STATUS", "STAGE"]
    short = listed[1].split()[0]
    assert listed[1].split()[1:4] == ["v2", "v1", "running"]
    shown = fleet.hub_cli("rollout", "show", short).stdout  # the short id printed is accepted back
    assert "v2 over v1, running" in shown and "decision " in shown and "history:" in shown
    aborted = fleet.hub_cli("rollout", "abort", short, "--reason", "end of the cli test")
    assert "aborted" in aborted.stdout


def test_ambiguous_or_unknown_rollout_prefixes_are_one_line_errors(as_operator: FieldFleet,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    fleet = as_operator
    with fleet.api("viewer") as viewer:
        if len(viewer.get("/rollouts").json()) < 2:  # two rollouts: start and abort another one
            fleet.submit_model(version_copy(fleet, "v3"), "cli test: no labels to gate it on", skip_gate=True)
            with fleet.api("operator") as op:
                started = op.post("/rollouts", json={"candidate": "v3", "canary": ["cli-b"], "reason": "t"})
                assert started.status_code == 201, started.text
                op.post(f"/rollouts/{started.json()['id']}/abort", json={"reason": "t"}).raise_for_status()
    assert main(["hub", "rollout", "show", "ro-"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'ro-' is ambiguous" in err and "give more characters" in err
    assert main(["hub", "rollout", "pause", "ro-zzz", "--reason", "x"]) == 1
    assert "no rollout id starts with 'ro-zzz'" in capsys.readouterr().err


# -- exit codes ----------------------------------------------------------------------------------------------------
def test_exit_codes_refused_usage_and_unreachable(fleet: FieldFleet) -> None:
    bad_token = fleet.hub_cli("devices", check=False, FLEETLOOP_HUB_TOKEN="not-a-token-of-this-hub")
    assert bad_token.returncode == 1 and bad_token.stdout == ""
    assert "(401)" in bad_token.stderr and "FLEETLOOP_HUB_TOKEN" in bad_token.stderr
    assert len(bad_token.stderr.strip().splitlines()) == 1
    viewer = fleet.hub_cli("rollout", "start", "v2", "--reason", "x", role="viewer", check=False)
    assert viewer.returncode == 1 and "(403)" in viewer.stderr and "operator" in viewer.stderr
    missing = fleet.hub_cli("models", "v99", check=False)
    assert missing.returncode == 1 and "(404)" in missing.stderr
    usage = fleet.hub_cli("rollout", "pause", "ro-1", check=False)
    assert usage.returncode == 2 and "needs --reason" in usage.stderr
    token_file = fleet.root / "viewer.token"
    token_file.write_text(fleet.tokens["viewer"] + "\n")
    by_file = fleet.hub_cli("devices", "--token-file", str(token_file), check=False, FLEETLOOP_HUB_TOKEN="")
    assert by_file.returncode == 0 and "cli-a" in by_file.stdout
    help_text = fleet.hub_cli("rollout", "--help").stdout
    assert "exit codes: 0 done; 1 the hub refused" in " ".join(help_text.split())


# -- problem 3: a command never creates a database --------------------------------------------------------------
def test_an_unreachable_hub_is_one_line_and_no_database_appears(tmp_path: Path) -> None:
    """Issue 11 #3: `fleetloop hub devices --dev` made ./var/hub/hub.db and printed nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETLOOP_HUB_")}
    env |= {"FLEETLOOP_HUB_DEV_MODE": "true", "FLEETLOOP_HUB_URL": f"http://127.0.0.1:{free_port()}"}
    out = subprocess.run(fleetloop("hub", "devices"), cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 2, out.stdout + out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "cannot reach the hub at http://127.0.0.1:" in out.stderr
    assert "FLEETLOOP_HUB_URL" in out.stderr and out.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no var/hub/hub.db, nothing at all


# -- problem 8: a busy port ---------------------------------------------------------------------------------------
def test_serve_on_a_busy_port_is_one_line_exit_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETLOOP_HUB_")}
        out = subprocess.run(fleetloop("hub", "serve", "--dev", "--data-dir", str(tmp_path / "hub"), "--port",
                                       str(port), "--mqtt-port", str(free_port())),
                             env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0] and "--port" in lines[0]
