"""An engine-less `docker compose up`: every volume a temporary directory, the one-shot services' real commands.

`FakeHost` gives each service a root whose mount targets link to the volumes. The one-shots run in
dependency order with their real commands and container paths translated: provision (`fleetloop provision
init`), model-init (the session's model fixture stands in for the recipe's output; the real `--if-missing`
command then finds it) and hub-init (`fleetloop provision register-model`). Then each long-running service
finds what it needs in those volumes, and runs outside dev mode over TLS: a real mosquitto runs the config
`provision` rendered (TLS listener, server certificate, password file, ACL) and the healthcheck command itself
is run against it; the hub (`fleetloop hub serve`, a process with the service's settings) connects over TLS and
answers its own healthcheck; an agent (`fleetloop provision claim-and-run`) claims a slot, connects over TLS and
shows up online at the hub; the simulator (`fleetloop sim publish`) publishes over TLS.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from agent.app import model_verifier
from agent.settings import AgentSettings
from fleetloop.claim import agent_environment, claim_slot
from fleetloop.cli import main
from fleetloop.devbroker import HUB_USER, free_port, mqtt_connack, password_matches, render_acl
from fleetloop.provision import PROBE_USER, SIM_USER, read_slots
from hub.app.settings import HubSettings
from hub.store import open_store
from infra.versions import read_version
from tests.deploy.compose import ROOT, FakeHost, command, load
from tests.deploy.mosquitto import mosquitto_from
from tests.fixtures.postgres import PostgresServer

SERVICES = load()["services"]
SLOTS = int(SERVICES["provision"]["command"][SERVICES["provision"]["command"].index("--slots") + 1])


def option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def broker_conf(host: FakeHost) -> str:
    """The config the mosquitto service runs: `provision` rendered it into the broker's volume."""
    words = command(SERVICES["mosquitto"])
    assert words[1:2] == ["-c"]
    return host.path("mosquitto", words[2]).read_text()


def passwd(host: FakeHost) -> dict[str, str]:
    conf = dict(line.split(None, 1) for line in broker_conf(host).splitlines() if line.strip() and
                not line.startswith("#"))
    text = host.path("mosquitto", conf["password_file"]).read_text()
    return dict(line.split(":", 1) for line in text.splitlines())


def in_container(host: FakeHost, service: str, text: str) -> str:
    """A shell command with every container path in it translated to this host's."""
    return re.sub(r"/(?:mosquitto|provision|var|models)/[^\s\"')]+", lambda m: str(host.path(service, m[0])), text)


def process_env(overrides: dict[str, str]) -> dict[str, str]:
    """This environment without FLEETLOOP_* settings, plus `overrides`; the children import this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETLOOP_")}
    return env | {"PYTHONPATH": str(ROOT)} | overrides


def wait_for(what: str, check: Callable[[], Any], procs: list[subprocess.Popen[str]], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            assert proc.poll() is None, f"{proc.args!r} exited waiting for {what}: {proc.communicate()[1][-3000:]}"
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    """SIGTERM, as `docker compose stop` sends; the exit code and output."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


def provision_args(host: FakeHost) -> list[str]:
    args = host.args("provision")
    for owner in ("--owner", "--broker-owner", "--postgres-owner"):  # compose: root for uids 1000/1883/999
        args[args.index(owner) + 1] = f"{os.getuid()}:{os.getgid()}"  # here: ourselves
    return args


def postgres_service(server: PostgresServer, host: FakeHost) -> None:
    """The postgres service on this host: the test run's own server, with the role and database the official
    image's entrypoint makes from the service's environment and the password `provision` wrote."""
    import psycopg
    from psycopg import sql

    env = SERVICES["postgres"]["environment"]
    password = host.path("postgres", env["POSTGRES_PASSWORD_FILE"]).read_text().strip()
    user, db = sql.Identifier(env["POSTGRES_USER"]), sql.Identifier(env["POSTGRES_DB"])
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(db))
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [env["POSTGRES_USER"]]).fetchone()
        # the image's POSTGRES_USER is its superuser (as this server's `fleetloop` already is)
        conn.execute(sql.SQL("{} {} SUPERUSER LOGIN PASSWORD {}").format(
            sql.SQL("ALTER ROLE" if exists else "CREATE ROLE"), user, sql.Literal(password)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, user))
    url = urlsplit(tomllib.loads(host.path("hub", "/provision/hub/secrets.toml").read_text())["store_url"])
    assert (url.hostname, url.port, url.password) == ("postgres", 5432, password)  # the service, its password
    host.addresses["postgres:5432"] = f"127.0.0.1:{server.port}"


def hub_args(host: FakeHost, service: str) -> list[str]:
    """`service`'s command with its --config file as the container sees it through compose's network: a copy with
    each service's name:port replaced by where its stand-in listens here (the provisioned file is unchanged)."""
    args = host.args(service)
    at = args.index("--config") + 1
    text = Path(args[at]).read_text()
    for name, here in host.addresses.items():
        text = text.replace(f"@{name}/", f"@{here}/")
    copy = host.tmp / "network" / service / Path(args[at]).name
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(text)
    args[at] = str(copy)
    return args


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, initial_model_dir: Path,
       postgres_server: PostgresServer) -> Iterator[FakeHost]:
    host = FakeHost(tmp_path_factory.mktemp("compose"), load())
    with pytest.MonkeyPatch.context() as env:
        for key in [k for k in os.environ if k.startswith("FLEETLOOP_")]:
            env.delenv(key)
        assert main(provision_args(host)) == 0
        postgres_service(postgres_server, host)
        shutil.copytree(initial_model_dir, host.path("model-init", option(command(SERVICES["model-init"]), "--out")))
        assert main(host.args("model-init")) == 0
        for key, value in host.env("hub-init").items():
            env.setenv(key, value)
        assert main(hub_args(host, "hub-init")) == 0
        yield host


@pytest.fixture(scope="module")
def broker(up: FakeHost, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real mosquitto running the config `provision` rendered, with the broker volume's files (TLS included)."""
    with mosquitto_from(broker_conf(up), lambda path: up.path("mosquitto", path),
                        tmp_path_factory.mktemp("broker")) as port:
        yield port


def test_the_broker_gets_every_identity_and_its_healthcheck_passes(up: FakeHost, broker: int) -> None:
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
                   up.path("mosquitto", "/mosquitto/auth/server.key"),
                   up.path("provision", "/provision/ca/mqtt-ca.key"),
                   up.path("simulator", "/provision/sim/mqtt_password")):
        assert secret.stat().st_mode & 0o777 == 0o600, secret
    conf = broker_conf(up)
    assert re.findall(r"(?m)^listener .*", conf) == ["listener 8883"]
    assert "cafile /mosquitto/auth/mqtt-ca.crt" in conf and "keyfile /mosquitto/auth/server.key" in conf

    # the healthcheck itself, pointed at this broker instead of 8883, with the volume's files
    healthcheck = SERVICES["mosquitto"]["healthcheck"]["test"][1]
    assert shutil.which("mosquitto_sub"), "mosquitto_sub is missing: run 'make mosquitto' (mosquitto-clients)"
    check = in_container(up, "mosquitto", healthcheck.replace("-p 8883", f"-p {broker}"))
    assert f"-p {broker}" in check and not re.search(r"[ (]/mosquitto/", check)
    assert subprocess.run(["sh", "-c", check], timeout=30, check=False).returncode == 0
    wrong = check.replace(f"-u {PROBE_USER}", f"-u {SIM_USER}")  # sim may not read $SYS: no message
    assert subprocess.run(["sh", "-c", wrong], timeout=30, check=False).returncode != 0
    by_ip = check.replace("-h localhost", "-h 127.0.0.1")  # not a name in the certificate: refused
    assert subprocess.run(["sh", "-c", by_ip], timeout=30, check=False, capture_output=True).returncode != 0
    with pytest.raises(OSError):  # no plain text on the listener
        mqtt_connack("127.0.0.1", broker, HUB_USER, hub_password["mqtt_password"])


def test_the_hub_the_simulator_and_an_agent_run_outside_dev_mode_over_tls(
        up: FakeHost, broker: int, monkeypatch: pytest.MonkeyPatch) -> None:
    hub_env = up.env("hub")
    for key, value in hub_env.items():
        monkeypatch.setenv(key, value)
    settings = HubSettings.load(Path(hub_args(up, "hub")[up.args("hub").index("--config") + 1]))
    assert not settings.dev_mode and settings.mqtt_tls_ca is not None
    assert sorted(settings.tokens.values()) == ["operator", "technician", "viewer"]
    assert settings.password and password_matches(passwd(up)[HUB_USER], settings.password)
    assert settings.data_dir.resolve() == up.volumes["hub-data"].resolve()
    assert settings.store.startswith("postgresql://")  # the postgres service, not a file in hub-data
    store = open_store(settings.store)
    try:
        assert [r.version for r in store.model_versions(status="active")] == ["v1"]  # hub-init registered it
    finally:
        store.close()
    operator = next(t for t, role in settings.tokens.items() if role == "operator")
    api_port = free_port()
    base = f"http://127.0.0.1:{api_port}"
    here = {"MQTT_HOST": "localhost", "MQTT_PORT": str(broker)}  # `mosquitto` and 8883 in compose

    cli = [sys.executable, "-m", "fleetloop.cli"]
    procs: dict[str, subprocess.Popen[str]] = {}

    def start(service: str, env: dict[str, str], args: list[str]) -> subprocess.Popen[str]:
        procs[service] = subprocess.Popen([*cli, *args], env=process_env(env), cwd=ROOT, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return procs[service]

    try:
        hub = start("hub", hub_env | {f"FLEETLOOP_HUB_{k}": v for k, v in here.items()} | {
            "FLEETLOOP_HUB_API_HOST": "127.0.0.1", "FLEETLOOP_HUB_API_PORT": str(api_port)}, hub_args(up, "hub"))

        def hub_health() -> dict[str, Any] | None:
            try:
                body = httpx.get(f"{base}/health", timeout=5).json()
            except httpx.HTTPError:
                return None
            return dict(body) if body["broker"]["status"] == "ok" else None

        health = wait_for("the hub's MQTT connections over TLS", hub_health, [hub])
        assert health["dev_mode"] is False and health["status"] == "ok", health
        # the hub's own healthcheck (CMD-SHELL), pointed at this port
        test = SERVICES["hub"]["healthcheck"]["test"]
        assert test[0] == "CMD-SHELL" and test[1].startswith("python -c ")
        check = test[1].replace(":8000/", f":{api_port}/").replace("python", sys.executable, 1)
        assert subprocess.run(["sh", "-c", check], timeout=30, check=False).returncode == 0
        assert httpx.get(f"{base}/devices", timeout=10).status_code == 401  # the provisioned tokens are enforced

        sim_args = up.args("simulator")
        sim_args[sim_args.index("--host") + 1], sim_args[sim_args.index("--port") + 1] = here["MQTT_HOST"], str(broker)
        sim_args[sim_args.index("--rate") + 1] = "20"  # compose's 1 reading/s takes 30 s to a first window
        simulator = start("simulator", {}, sim_args)
        agent_env = up.env("agent") | {f"FLEETLOOP_AGENT_{k}": v for k, v in here.items()}
        agent_args = up.args("agent")
        agent = start("agent", agent_env, [*agent_args[:2], "--holder", "replica-tls", *agent_args[2:]])

        def online() -> list[dict[str, Any]]:
            devices = httpx.get(f"{base}/devices", headers={"Authorization": f"Bearer {operator}"}, timeout=5).json()
            return [d for d in devices if d["online"] and d["model_version"] == "v1"]

        seen = wait_for("the agent online at the hub", online, [hub, simulator, agent])
        assert [d["device_id"] for d in seen] == ["dev-0"]  # the first free slot
        # its sensor readings come through the same TLS-only broker (the MQTT source): scored and logged
        agent_db = up.path("agent", option(command(SERVICES["agent"]), "--data-root")) / "dev-0" / "agent.db"

        def predictions() -> int:
            if not agent_db.is_file():
                return 0
            with contextlib.closing(sqlite3.connect(f"file:{agent_db}?mode=ro", uri=True, timeout=5)) as db:
                try:
                    return int(db.execute("SELECT count(*) FROM predictions").fetchone()[0])
                except sqlite3.OperationalError:  # not migrated yet
                    return 0

        assert wait_for("predictions from readings over TLS", predictions, [hub, simulator, agent]) > 0
    finally:
        results = {name: stop(proc) for name, proc in reversed(procs.items())}
    code, out, err = results["simulator"]
    assert code == 0, err[-3000:]
    assert json.loads(out.splitlines()[-1])["published"] > 0  # over TLS: the broker has no other listener
    code, _, err = results["agent"]
    assert "replica-tls claimed device slot dev-0" in err and code == 0, err[-3000:]
    assert results["hub"][0] == 0, results["hub"][2][-3000:]


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
                settings = AgentSettings.load()  # device_id from the environment; production checks on
                assert settings.device_id == claim.slot.device_id and not settings.dev_mode
                assert settings.mqtt_tls_ca is not None and settings.mqtt_tls_ca.read_bytes() == up.path(
                    "provision", "/provision/ca/mqtt-ca.crt").read_bytes()
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
    assert main(provision_args(up)) == 0
    for key, value in up.env("hub-init").items():
        monkeypatch.setenv(key, value)
    assert main(hub_args(up, "hub-init")) == 0  # registered already: signs /models/v1 again, identically
    after = {p: p.read_bytes() for v in up.volumes.values() for p in sorted(v.rglob("*")) if p.is_file()}
    changed = [str(p) for p in before if p in after and before[p] != after[p]
               and not p.name.startswith(("hub.db", "mosquitto.db"))]  # databases of the services that ran
    assert not changed and set(after) >= set(before)
