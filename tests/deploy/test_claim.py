"""Claiming device slots: distinct ids for concurrent agents, the same id back for the same host, no stale claims."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.settings import AgentSettings
from fleetloop.claim import agent_environment, claim_slot, previous_holder
from fleetloop.devbroker import DevBroker
from fleetloop.provision import provision, read_slots
from shared.errors import ConfigError
from tests.deploy.compose import ROOT

HOLD = """
import sys
from pathlib import Path
from fleetloop.claim import claim_slot
claim = claim_slot(Path(sys.argv[1]), sys.argv[2])
print(claim.slot.device_id, flush=True)
sys.stdin.read()  # hold the claim until stdin closes (or the process is killed)
"""


@pytest.fixture
def devices(tmp_path: Path) -> Path:
    provision(tmp_path / "p", slots=3)
    return tmp_path / "p" / "devices"


@contextmanager
def held_in_another_process(devices: Path, holder: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A process holding a claim (until stdin closes or it is killed); yields it and its device id."""
    with subprocess.Popen([sys.executable, "-c", HOLD, str(devices), holder], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True, cwd=ROOT) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        try:
            yield proc, proc.stdout.readline().strip()
        finally:
            if proc.poll() is None:
                proc.stdin.close()
            proc.wait(30)


def test_two_agents_get_different_slots_and_a_host_gets_its_own_back(devices: Path) -> None:
    a, b = claim_slot(devices, "host-a"), claim_slot(devices, "host-b")
    assert (a.slot.device_id, b.slot.device_id) == ("dev-0", "dev-1")
    a.release()
    b.release()
    with claim_slot(devices, "host-b") as b_again, claim_slot(devices, "host-a") as a_again:
        assert (b_again.slot.device_id, a_again.slot.device_id) == ("dev-1", "dev-0")  # each its own, in any order
        with claim_slot(devices, "host-c") as c:
            assert c.slot.device_id == "dev-2"
            with pytest.raises(ConfigError, match=r"all 3 device slots .* are claimed"):
                claim_slot(devices, "host-d")
    assert [previous_holder(s) for s in read_slots(devices)] == ["host-a", "host-b", "host-c"]
    with claim_slot(devices, "host-d") as d:  # a newcomer takes the first free slot
        assert d.slot.device_id == "dev-0" and d.held
    assert not d.held and "released" in repr(d)


def test_a_claim_excludes_other_processes_and_dies_with_its_process(devices: Path) -> None:
    with held_in_another_process(devices, "container-1") as (proc, held):
        assert held == "dev-0"
        with claim_slot(devices, "container-1") as mine:  # the same name cannot take a slot that is held
            assert mine.slot.device_id == "dev-1"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    with claim_slot(devices, "container-2") as after:  # the kernel dropped the dead process's lock
        assert after.slot.device_id == "dev-0"
    with held_in_another_process(devices, "container-1") as (_, held):  # restarted: its last slot, dev-1
        assert held == "dev-1"


def test_no_slots_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no device slots"):
        claim_slot(tmp_path, "host")
    with pytest.raises(ConfigError, match="holder"):
        claim_slot(tmp_path, "")


def test_the_environment_makes_the_agent_that_device(devices: Path, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    with claim_slot(devices, "host") as claim:
        env = agent_environment(claim.slot, tmp_path / "data", source_topic="sensors/{device_id}/readings")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("FLEETLOOP_AGENT_SOURCE__KIND", "mqtt")
        monkeypatch.setenv("FLEETLOOP_AGENT_SOURCE__SENSORS", '["temperature"]')
        settings = AgentSettings.load()  # device_id comes from the environment (load reads it; the class does not)
        assert (settings.device_id, settings.username) == ("dev-0", "dev-0")
        assert settings.mqtt_password and settings.mqtt_password.get_secret_value() == claim.slot.password
        assert (settings.site, settings.asset_type) == (claim.slot.site, claim.slot.asset_type)
        assert settings.data_dir == tmp_path / "data" / "dev-0"
        assert settings.source.topic == "sensors/dev-0/readings"
        with pytest.raises(ConfigError, match="device_id"):
            agent_environment(claim.slot, tmp_path, source_topic="sensors/all")


def test_claim_and_run_runs_the_agent_as_the_claimed_device(devices: Path, tmp_path: Path,
                                                            initial_model_dir: Path) -> None:
    slots = read_slots(devices)
    workdir = tmp_path / "broker"
    workdir.mkdir()
    # a dev broker that knows the slots' passwords (it reads them back from its credentials file)
    (workdir / "credentials.json").write_text(json.dumps({"port": 0, "users": {s.device_id: s.password
                                                                               for s in slots}}))
    # dev-0 is taken, so this agent must become dev-1
    with claim_slot(devices, "someone-else"), DevBroker(workdir) as broker:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETLOOP_")}
        env |= {"FLEETLOOP_AGENT_MQTT_PORT": str(broker.port), "FLEETLOOP_AGENT_DEV_MODE": "true",
                "FLEETLOOP_AGENT_INITIAL_MODEL": str(initial_model_dir)}
        cmd = [sys.executable, "-m", "fleetloop.cli", "provision", "claim-and-run", "--devices-dir", str(devices),
               "--data-root", str(tmp_path / "agents"), "--holder", "replica-1", "--",
               "--source", "sim", "--rate", "0", "--max-windows", "3"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["device_id"] == "dev-1" and summary["windows"] == 3
    assert (tmp_path / "agents" / "dev-1" / "agent.db").is_file()
    assert "replica-1 claimed device slot dev-1" in done.stderr
    assert slots[1].password not in done.stdout + done.stderr
    assert previous_holder(slots[1]) == "replica-1"
