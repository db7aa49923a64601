"""An engine-less `docker compose up`: every volume a temporary directory, the one-shot services' real commands.

`FakeHost` gives each service a root whose mount targets link to the volumes. The one-shots run in
dependency order with their real commands and container paths translated: provision (`fleetloop provision
init`), model-init (the session's model fixture stands in for the recipe's output; the real `--if-missing`
command then finds it) and hub-init (`fleetloop provision register-model`). Then each long-running service
finds what it needs in those volumes: the broker its password file and ACL (a real mosquitto runs them, and
the healthcheck command itself is run), the hub valid settings and a /health that answers, agent replicas
distinct device slots and an initial model that verifies against the pinned key, the simulator its password.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.app import model_verifier
from agent.settings import AgentSettings
from fleetloop.claim import agent_environment, claim_slot
from fleetloop.cli import main
from fleetloop.devbroker import HUB_USER, mqtt_connack, password_matches, render_acl
from fleetloop.provision import PROBE_USER, SIM_USER, read_slots
from hub.api.app import create_app
from hub.app.settings import HubSettings
from hub.store import open_store
from infra.versions import read_version
from tests.deploy.compose import ROOT, FakeHost, command, load
from tests.deploy.mosquitto import mosquitto_with
from tests.hub.api.conftest import serve

SERVICES = load()["services"]
SLOTS = int(SERVICES["provision"]["command"][SERVICES["provision"]["command"].index("--slots") + 1])


def option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def passwd(host: FakeHost) -> dict[str, str]:
    conf = dict(line.split(None, 1) for line in (ROOT / "mosquitto" / "mosquitto.conf").read_text().splitlines()
                if line.strip() and not line.startswith("#"))
    text = host.path("mosquitto", conf["password_file"]).read_text()
    return dict(line.split(":", 1) for line in text.splitlines())


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, initial_model_dir: Path) -> Iterator[FakeHost]:
    host = FakeHost(tmp_path_factory.mktemp("compose"), load())
    with pytest.MonkeyPatch.context() as env:
        for key in [k for k in os.environ if k.startswith("FLEETLOOP_")]:
            env.delenv(key)
        args = host.args("provision")
        for owner in ("--owner", "--broker-owner"):  # compose runs it as root for uids 1000/1883; here: ourselves
            args[args.index(owner) + 1] = f"{os.getuid()}:{os.getgid()}"
        assert main(args) == 0
        shutil.copytree(initial_model_dir, host.path("model-init", option(command(SERVICES["model-init"]), "--out")))
        assert main(host.args("model-init")) == 0
        for key, value in host.env("hub-init").items():
            env.setenv(key, value)
        assert main(host.args("hub-init")) == 0
        yield host


def test_the_broker_gets_every_identity_and_its_healthcheck_passes(up: FakeHost, tmp_path: Path) -> None:
    lines = passwd(up)
    slots = read_slots(up.path("agent", option(command(SERVICES["agent"]), "--devices-dir")))
    assert [s.device_id for s in slots] == [f"dev-{i}" for i in range(SLOTS)]
    assert list(lines) == [HUB_USER, SIM_USER, PROBE_USER] + [s.device_id for s in slots]
    hub_password = tomllib.loads(up.path("hub", option(command(SERVICES["hub"]), "--config")).read_text())
    assert password_matches(lines[HUB_USER], hub_password["mqtt_password"])
    assert password_matches(lines["dev-3"], slots[3].password)
    assert not password_matches(lines["dev-3"], slots[4].password)
    acl = up.path("mosquitto", "/mosquitto/auth/acl")
    assert acl.read_text() == render_acl((ROOT / "mosquitto" / "acl").read_text(), "fleetloop")
    for secret in (acl, up.path("mosquitto", "/mosquitto/auth/passwd"),
                   up.path("simulator", "/provision/sim/mqtt_password")):
        assert secret.stat().st_mode & 0o777 == 0o600, secret

    healthcheck = SERVICES["mosquitto"]["healthcheck"]["test"][1]
    probe_file = re.search(r"cat (\S+?)\)", healthcheck)[1]  # type: ignore[index]
    with mosquitto_with(up.path("mosquitto", "/mosquitto/auth/passwd"), acl, tmp_path / "broker") as port:
        assert mqtt_connack("127.0.0.1", port, HUB_USER, hub_password["mqtt_password"]) == 0
        assert mqtt_connack("127.0.0.1", port, "dev-3", slots[3].password) == 0
        assert mqtt_connack("127.0.0.1", port, "dev-3", slots[4].password) != 0
        # the healthcheck itself, pointed at this broker instead of 1883
        assert shutil.which("mosquitto_sub"), "mosquitto_sub is missing: run 'make mosquitto' (mosquitto-clients)"
        check = healthcheck.replace("-p 1883", f"-p {port}").replace(probe_file, str(up.path("mosquitto",
                                                                                           probe_file)))
        assert "1883" not in check
        assert subprocess.run(["sh", "-c", check], timeout=30, check=False).returncode == 0
        wrong = check.replace(f"-u {PROBE_USER}", f"-u {SIM_USER}")  # sim may not read $SYS: no message
        assert subprocess.run(["sh", "-c", wrong], timeout=30, check=False).returncode != 0


def test_the_hub_starts_from_the_provisioned_settings_and_answers_its_healthcheck(
        up: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in up.env("hub").items():
        monkeypatch.setenv(key, value)
    settings = HubSettings.load(Path(up.args("hub")[up.args("hub").index("--config") + 1]))
    assert sorted(settings.tokens.values()) == ["operator", "technician", "viewer"]
    assert settings.password and password_matches(passwd(up)[HUB_USER], settings.password)
    assert settings.data_dir.resolve() == up.volumes["hub-data"].resolve()
    store = open_store(settings.store)
    try:
        assert [r.version for r in store.model_versions(status="active")] == ["v1"]  # hub-init registered it
        with serve(create_app(settings, store)) as base:
            port = base.rsplit(":", 1)[1]
            test = SERVICES["hub"]["healthcheck"]["test"]
            assert test[:2] == ["CMD", "python"]
            check = [sys.executable, *(w.replace(":8000/", f":{port}/") for w in test[2:])]
            assert ":8000" not in " ".join(check)
            assert subprocess.run(check, timeout=30, check=False).returncode == 0  # the healthcheck itself
            assert httpx.get(f"{base}/devices", timeout=10).status_code == 401  # the provisioned tokens are enforced
    finally:
        store.close()


def test_agent_replicas_claim_their_own_slots_and_verify_the_initial_model(
        up: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    words = command(SERVICES["agent"])
    devices = up.path("agent", option(words, "--devices-dir"))
    data_root = up.path("agent", option(words, "--data-root"))
    with claim_slot(devices, "replica-a") as a, claim_slot(devices, "replica-b") as b:
        assert a.slot.device_id != b.slot.device_id
        claimed = a.slot.device_id
        for claim in (a, b):
            with monkeypatch.context() as env:
                for key, value in {**up.env("agent"), **agent_environment(
                        claim.slot, data_root, source_topic=option(words, "--source-topic"))}.items():
                    env.setenv(key, value)
                settings = AgentSettings.load()  # device_id from the environment
                assert settings.device_id == claim.slot.device_id and settings.dev_mode
                assert settings.source.topic == f"sensors/{claim.slot.device_id}/readings"
                assert settings.data_dir.parent.resolve() == up.volumes["agent-data"].resolve()
                verifier = model_verifier(settings)
                assert verifier is not None  # the pinned key, not dev mode's "unsigned is fine"
                assert settings.initial_model is not None
                manifest, _ = read_version(settings.initial_model, verifier)
                assert manifest.version == "v1"
    with claim_slot(devices, "replica-a") as again:  # a restarted container gets its device back
        assert again.slot.device_id == claimed


def test_the_simulator_password_is_the_brokers(up: FakeHost) -> None:
    words = command(SERVICES["simulator"])
    password = up.path("simulator", option(words, "--password-file")).read_text().strip()
    assert password_matches(passwd(up)[option(words, "--username")], password)


def test_a_second_up_changes_nothing(up: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {p: p.read_bytes() for v in up.volumes.values() for p in sorted(v.rglob("*")) if p.is_file()}
    args = up.args("provision")
    for owner in ("--owner", "--broker-owner"):
        args[args.index(owner) + 1] = f"{os.getuid()}:{os.getgid()}"
    assert main(args) == 0
    for key, value in up.env("hub-init").items():
        monkeypatch.setenv(key, value)
    assert main(up.args("hub-init")) == 0  # registered already: signs /models/v1 again, identically
    after = {p: p.read_bytes() for v in up.volumes.values() for p in sorted(v.rglob("*")) if p.is_file()}
    changed = [str(p) for p in before if p in after and before[p] != after[p] and not p.name.startswith("hub.db")]
    assert not changed and set(after) >= set(before)
