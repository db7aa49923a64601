"""docker-compose.yml and the Dockerfile, checked without a Docker engine (there is none here).

The file is valid Compose (the Compose Specification's schema, interpolation, volumes, build targets,
dependencies, healthchecks), and everything it names exists and agrees with the code: bind-mounted files,
Dockerfile targets, `fleetloop` commands (parsed by the real CLI parsers, runnable with the image's extra),
FLEETLOOP_AGENT_* / FLEETLOOP_HUB_* settings, ports, the hub's health route, the ACL users and topics.
tests/deploy/test_compose_up.py then runs the one-shot services' real commands against fake volumes.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema_rs
import pytest
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from agent.settings import AgentSettings
from fleetloop.claim import DEVICE_ID_PLACEHOLDER
from fleetloop.cli import EXTRAS, GROUPS, load_group
from fleetloop.provision import (
    CA_CERT_FILE,
    POSTGRES_DB,
    POSTGRES_PORT,
    POSTGRES_USER,
    PROBE_USER,
    SIM_USER,
    TLS_LOCAL_HOST,
    TLS_PORT,
    provision,
    render_broker_config,
)
from hub.app.settings import HubSettings
from infra.config import EnvSettings, Settings, settings_type
from shared.wire import field_types
from sim.machine import SENSORS
from tests.deploy.compose import (
    DOCKERFILE,
    ROOT,
    FakeHost,
    InterpolationError,
    Mount,
    command,
    dockerfile_instructions,
    dockerfile_stages,
    interpolate,
    load,
    mounts,
    raw,
    stage_chain,
    variables,
)

CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
MOSQUITTO_UID = 1883  # the `mosquitto` user of the official eclipse-mosquitto image
POSTGRES_UID = 999  # the `postgres` user of the official postgres image
POSTGRES_IMAGE_ENV = {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD_FILE"}  # its entrypoint's; no password
SERVICES = load()["services"]
PROJECT = {name: s for name, s in SERVICES.items() if "build" in s}


def target(service: dict[str, Any]) -> str:
    return str(service["build"]["target"])


def option(words: list[str], name: str) -> str:
    assert name in words, f"{name} missing from {words}"
    return words[words.index(name) + 1]


def mosquitto_conf() -> dict[str, str]:
    """The config the compose broker runs: the repository's, rendered by `provision` with its listener on TLS."""
    lines = render_broker_config((ROOT / "mosquitto" / "mosquitto.conf").read_text()).splitlines()
    return dict(line.split(None, 1) for line in lines if line.strip() and not line.startswith("#"))


def provisioned(service: str, path: str) -> str:
    """Where `provision` writes the file `service` reads at container path `path` (same volume, its mount)."""
    mount = next(m for m in mounts(SERVICES[service]) if m.named and path.startswith(m.target + "/"))
    writer = next(m for m in mounts(SERVICES["provision"]) if m.source == mount.source)
    return writer.target + path.removeprefix(mount.target)


def acl_lines() -> list[str]:
    return [line.strip() for line in (ROOT / "mosquitto" / "acl").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def acl_rules(user: str) -> list[str]:
    """The `topic` rules of one `user` block."""
    rules, current = [], None
    for line in acl_lines():
        if line.startswith("user "):
            current = line.split()[1]
        elif line.startswith("topic ") and current == user:
            rules.append(line)
    return rules


# --- the file is valid Compose -----------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads((Path(__file__).with_name("compose-spec.json")).read_text())
    validator = jsonschema_rs.validator_for(schema)
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in validator.iter_errors(raw())]
    assert not errors, errors
    assert not list(validator.iter_errors(load()))  # still valid once interpolated


def test_every_variable_has_a_default_and_is_not_a_setting() -> None:
    names = variables(raw())
    assert names == {"FLEETLOOP_DEVICE_SLOTS", "FLEETLOOP_SIM_RATE", "FLEETLOOP_SIM_SEED", "FLEETLOOP_API_BIND",
                     "FLEETLOOP_MQTT_BIND"}
    load({})  # raises InterpolationError for a variable without a default
    header = (ROOT / "docker-compose.yml").read_text().split("\nname:", 1)[0]
    for name in names:
        assert not name.startswith(("FLEETLOOP_AGENT_", "FLEETLOOP_HUB_")), f"{name} looks like a setting"
        assert name in header, f"{name} is not documented at the top of docker-compose.yml"
    assert load({"FLEETLOOP_DEVICE_SLOTS": "5"})["services"]["provision"]["command"][5] == "5"
    with pytest.raises(InterpolationError):
        interpolate("${UNSET_WITHOUT_DEFAULT}", {})
    assert interpolate("$$SYS ${A:-x} ${B-y} $C", {"B": "", "C": "c"}) == "$SYS x  c"


def test_bind_mounts_exist_and_named_volumes_are_declared_and_used() -> None:
    declared = set(load()["volumes"])
    used = set()
    for name, service in SERVICES.items():
        targets = [m.target for m in mounts(service)]
        assert len(targets) == len(set(targets)), f"{name} mounts one path twice"
        for mount in mounts(service):
            if mount.named:
                assert mount.source in declared, f"{name}: volume {mount.source} is not declared"
                used.add(mount.source)
            else:
                assert mount.source.startswith("./"), f"{name}: {mount.source}: bind mounts are relative to the repo"
                assert (ROOT / mount.source).exists(), f"{name}: {mount.source} does not exist"
                assert mount.read_only, f"{name}: the repository is mounted read-only"
    assert used == declared, f"declared but unused: {declared - used}"


def test_build_targets_exist_and_each_image_has_one_build() -> None:
    stages = dockerfile_stages()
    images: dict[str, Any] = {}
    for name, service in PROJECT.items():
        assert service["build"]["context"] == "." and (ROOT / "Dockerfile").is_file()
        assert target(service) in stages, f"{name}: no stage {target(service)} in the Dockerfile"
        assert images.setdefault(service["image"], service["build"]) == service["build"], (
            f"{name}: the tag {service['image']} is built from two different targets")
    assert {target(s) for s in PROJECT.values()} == {"agent", "hub"}
    assert SERVICES["mosquitto"]["image"] == "eclipse-mosquitto:2"


def test_dependencies_exist_use_valid_conditions_and_have_no_cycle() -> None:
    for name, service in SERVICES.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in SERVICES and dep != name, f"{name} depends on unknown {dep}"
            assert spec["condition"] in CONDITIONS, f"{name} -> {dep}: {spec['condition']}"
            other = SERVICES[dep]
            if spec["condition"] == "service_healthy":
                check = other.get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), f"{dep} has no healthcheck"
            if spec["condition"] == "service_completed_successfully":
                assert other.get("restart") == "no", f"{dep} is waited for to exit, so it must not restart"
    done: set[str] = set()
    while len(done) < len(SERVICES):  # a topological order exists
        ready = {n for n, s in SERVICES.items() if n not in done and set(s.get("depends_on") or {}) <= done}
        assert ready, f"dependency cycle among {set(SERVICES) - done}"
        done |= ready
    for name, service in SERVICES.items():  # long-running services come back after a crash or reboot
        if service.get("restart") != "no":
            assert service.get("restart") == "unless-stopped", name


def test_commands_are_real_fleetloop_commands_runnable_in_their_image() -> None:
    for stage in ("agent", "hub"):  # the nearest ENTRYPOINT up the stage chain: a command is `GROUP …`
        entrypoints = [e for s in stage_chain(stage) for e in dockerfile_instructions(s, "ENTRYPOINT")]
        assert entrypoints[:1] == ['["fleetloop"]'], stage
    for name, service in PROJECT.items():
        words = command(service)
        group = words[0]
        assert group in GROUPS, f"{name}: {group} is not a fleetloop command group"
        load_group(group).build_parser(f"fleetloop {group}").parse_args(words[1:])  # SystemExit if not real
        installed = {"agent": "agent", "hub": "hub"}[target(service)]
        needs = GROUPS[group][1]
        assert set(EXTRAS[needs]) <= set(EXTRAS[installed]), f"{name}: `fleetloop {group}` needs the {needs} extra"
    claim = command(SERVICES["agent"])
    assert claim[:2] == ["provision", "claim-and-run"]
    sub = load_group("provision").build_parser("fleetloop provision").parse_args(claim[1:])
    load_group("agent").build_parser("fleetloop agent").parse_args(["run", *sub.agent_args])


def _fields(model: type[BaseModel] | type[Settings], path: list[str]) -> bool:
    """Whether `path` (lower-case, split at the nested delimiter) names a field of `model` (a pydantic model, or a
    msgspec settings struct)."""
    head, rest = path[0], path[1:]
    types = dict(field_types(model)) if issubclass(model, Settings) else {
        name: f.annotation for name, f in model.model_fields.items()}
    if head not in types:
        return False
    if not rest:
        return True
    annotation = settings_type(types[head]) or types[head]
    return isinstance(annotation, type) and issubclass(annotation, BaseModel | Settings) and _fields(annotation, rest)


def _env_naming(settings: type[BaseModel] | type[EnvSettings]) -> tuple[str, str]:
    """Prefix and nested delimiter of a settings model (pydantic-settings, or infra.config's EnvSettings)."""
    if issubclass(settings, BaseSettings):
        return settings.model_config["env_prefix"], settings.model_config["env_nested_delimiter"] or ""
    assert issubclass(settings, EnvSettings)
    return settings.ENV_PREFIX, settings.ENV_NESTED_DELIMITER


@pytest.mark.parametrize("settings", [AgentSettings, HubSettings])
def test_environment_names_real_settings(settings: type[BaseModel] | type[EnvSettings]) -> None:
    prefix, delimiter = _env_naming(settings)
    assert prefix and delimiter
    seen = 0
    for name, service in SERVICES.items():
        for key in service.get("environment") or {}:
            if name == "postgres":
                assert key in POSTGRES_IMAGE_ENV, f"{name}: {key} is read by nothing in the official image"
                continue
            assert key.startswith(("FLEETLOOP_AGENT_", "FLEETLOOP_HUB_")), f"{name}: {key} is read by nothing"
            if key.startswith(prefix):
                seen += 1
                path = key.removeprefix(prefix).lower().split(delimiter)
                assert _fields(settings, path), f"{name}: {key} is not a {settings.__name__} field"
                if settings is AgentSettings:
                    assert target(service) == "agent" and name == "agent", f"{name} sets agent settings"
                else:
                    assert target(service) == "hub", f"{name} sets hub settings"
    assert seen


def test_ports_agree_with_settings_and_the_broker_config() -> None:
    hub_env, agent_env = SERVICES["hub"]["environment"], SERVICES["agent"]["environment"]
    listener = mosquitto_conf()["listener"].split()
    assert listener == [str(TLS_PORT)], "the compose broker listens on all interfaces of its container, TLS only"
    assert [p.rsplit(":", 1)[1] for p in SERVICES["mosquitto"]["ports"]] == [str(TLS_PORT)]
    assert [p.rsplit(":", 1)[0] for p in SERVICES["mosquitto"]["ports"]] == ["127.0.0.1:8883"]  # loopback by default
    for port in (hub_env["FLEETLOOP_HUB_MQTT_PORT"], agent_env["FLEETLOOP_AGENT_MQTT_PORT"],
                 option(command(SERVICES["simulator"]), "--port")):
        assert port == str(TLS_PORT) == "8883"
    for host in (hub_env["FLEETLOOP_HUB_MQTT_HOST"], agent_env["FLEETLOOP_AGENT_MQTT_HOST"],
                 option(command(SERVICES["simulator"]), "--host")):
        assert host == "mosquitto" and host in SERVICES
    api_port = hub_env["FLEETLOOP_HUB_API_PORT"]
    assert api_port == str(HubSettings.model_fields["api_port"].default)
    assert [p.rsplit(":", 1)[1] for p in SERVICES["hub"]["ports"]] == [api_port]
    assert [p.rsplit(":", 1)[0] for p in SERVICES["hub"]["ports"]] == ["127.0.0.1:8000"]  # loopback by default
    assert hub_env["FLEETLOOP_HUB_API_HOST"] == "0.0.0.0"  # reachable from the other containers
    artifacts = urlsplit(hub_env["FLEETLOOP_HUB_ARTIFACT_BASE_URL"])
    assert (artifacts.hostname, str(artifacts.port)) == ("hub", api_port)
    assert "EXPOSE 8000" in dockerfile_stages()["hub"]


def _health_urls() -> list[str]:
    urls = [SERVICES["hub"]["healthcheck"]["test"][1]]
    urls += [h.replace("%s", "8000") for h in dockerfile_instructions("hub", "HEALTHCHECK")]
    return [re.search(r"http://[^'\"]+", u)[0] for u in urls]  # type: ignore[index]


def test_healthchecks_probe_real_endpoints_and_real_credentials() -> None:
    from hub.api.routes import ROUTERS

    routes = {(route.path, method) for router in ROUTERS for route in router.routes  # type: ignore[attr-defined]
              for method in route.methods}  # type: ignore[attr-defined]
    for name, service in SERVICES.items():  # podman 4.3 re-splits a CMD-form argument with spaces (issue 16)
        test = (service.get("healthcheck") or {}).get("test")
        assert test is None or (test[0] == "CMD-SHELL" and len(test) == 2), f"{name}: healthcheck not in CMD-SHELL form"
    api_port = SERVICES["hub"]["environment"]["FLEETLOOP_HUB_API_PORT"]
    for url in _health_urls():
        parts = urlsplit(url)
        assert (parts.hostname, str(parts.port)) == ("127.0.0.1", api_port)
        assert (parts.path, "GET") in routes, f"{url}: no such route in the hub API"
        assert not parts.query

    test = SERVICES["mosquitto"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    words = test[1].split()
    assert words[0] == "mosquitto_sub" and option(words, "-u") == PROBE_USER
    assert option(words, "-p") == str(TLS_PORT) and option(words, "-C") == "1" and "-W" in words
    assert option(words, "-h") == TLS_LOCAL_HOST  # a name in the broker's certificate (always provisioned)
    assert provisioned("mosquitto", option(words, "--cafile")) == f"/provision/broker/{CA_CERT_FILE}"
    assert "--insecure" not in words
    topic = option(words, "-t").strip("'")
    assert acl_rules(PROBE_USER) == [f"topic read {topic}"]  # it may read exactly what it probes
    secret = re.search(r"cat (\S+?)\)", test[1])[1]  # type: ignore[index]
    mount = next(m for m in mounts(SERVICES["mosquitto"]) if secret.startswith(m.target + "/"))
    provision_mount = next(m for m in mounts(SERVICES["provision"]) if m.source == mount.source)
    assert mount.named and mount.read_only
    assert provision_mount.target + secret.removeprefix(mount.target) == "/provision/broker/probe.password"
    for name in ("provision", "model-init", "hub-init"):  # one-shots on the hub image do not probe its API
        assert SERVICES[name]["healthcheck"] == {"disable": True}


def test_the_broker_reads_what_provision_writes() -> None:
    conf = mosquitto_conf()
    auth = {m.source: m for m in mounts(SERVICES["mosquitto"])}["broker-auth"]
    assert not [m for m in mounts(SERVICES["mosquitto"]) if m.source == "hub-secrets"]  # no hub password here
    for key, name in (("password_file", "passwd"), ("acl_file", "acl"), ("cafile", CA_CERT_FILE),
                      ("certfile", "server.crt"), ("keyfile", "server.key")):
        assert conf[key] == f"{auth.target}/{name}"
        assert provisioned("mosquitto", conf[key]) == f"/provision/broker/{name}"
    assert conf["allow_anonymous"] == "false"
    assert conf["persistence_location"].rstrip("/") in {m.target for m in mounts(SERVICES["mosquitto"])}
    run = command(SERVICES["mosquitto"])
    assert run[1] == "-c" and provisioned("mosquitto", run[2]) == "/provision/broker/mosquitto.conf"
    provision = command(SERVICES["provision"])
    acl, source_conf = option(provision, "--acl"), option(provision, "--conf")
    assert {m.target: m.source for m in mounts(SERVICES["provision"])}[acl] == "./mosquitto/acl"
    assert {m.target: m.source for m in mounts(SERVICES["provision"])}[source_conf] == "./mosquitto/mosquitto.conf"
    assert option(provision, "--tls-host") == SERVICES["hub"]["environment"]["FLEETLOOP_HUB_MQTT_HOST"] == "mosquitto"
    assert option(provision, "--broker-owner") == f"{MOSQUITTO_UID}:{MOSQUITTO_UID}"
    uid = re.search(r"useradd --uid (\d+) --gid (\d+)", DOCKERFILE.read_text())
    assert uid and option(provision, "--owner") == f"{uid[1]}:{uid[2]}"
    assert SERVICES["provision"]["user"] == "0:0"  # only to hand the volumes to those owners


def test_agent_service_scales() -> None:
    agent = SERVICES["agent"]
    for key in ("container_name", "hostname", "ports", "mac_address"):
        assert key not in agent, f"agent sets {key}: replicas would clash"
    env = agent["environment"]
    for claimed in ("DEVICE_ID", "MQTT_PASSWORD", "MQTT_USERNAME", "DATA_DIR", "SITE", "ASSET_TYPE",
                    "SOURCE__TOPIC"):
        assert f"FLEETLOOP_AGENT_{claimed}" not in env, f"the slot claim sets FLEETLOOP_AGENT_{claimed}"
    data_root = option(command(agent), "--data-root")
    writable = {m.target: m for m in mounts(agent) if m.named and not m.read_only}
    assert data_root in writable and option(command(agent), "--devices-dir") in writable  # claims and databases
    assert "deploy" not in agent or "replicas" not in agent["deploy"]
    waits = {dep: spec["condition"] for dep, spec in agent["depends_on"].items()}
    assert waits == {"mosquitto": "service_healthy", "hub": "service_healthy",  # the hub subscribes first
                     "hub-init": "service_completed_successfully"}  # v1 signed before an agent installs it


def test_simulator_agents_and_acl_agree_on_sensors_and_slots() -> None:
    sim, agent, provision = (command(SERVICES[n]) for n in ("simulator", "agent", "provision"))
    topic = option(sim, "--topic")
    assert option(agent, "--source-topic") == topic and DEVICE_ID_PLACEHOLDER in topic
    assert option(sim, "--username") == SIM_USER
    assert option(sim, "--devices") == option(provision, "--slots")  # one simulated machine per slot
    raw_sim = raw()["services"]["simulator"]["command"]
    raw_provision = raw()["services"]["provision"]["command"]
    assert raw_sim[raw_sim.index("--devices") + 1] == raw_provision[raw_provision.index("--slots") + 1]
    env = SERVICES["agent"]["environment"]
    assert env["FLEETLOOP_AGENT_SOURCE__KIND"] == "mqtt"
    assert json.loads(env["FLEETLOOP_AGENT_SOURCE__SENSORS"]) == list(SENSORS)
    assert f"pattern read {topic.replace(DEVICE_ID_PLACEHOLDER, '%u')}" in acl_lines()
    assert acl_rules(SIM_USER) == [f"topic write {topic.replace(DEVICE_ID_PLACEHOLDER, '+')}"]
    assert not topic.startswith("fleetloop/"), "sensor readings are not fleetloop traffic: the hub must not ingest them"
    password = option(sim, "--password-file")
    assert Mount("sim-secrets", password.rsplit("/", 1)[0], True) in mounts(SERVICES["simulator"])


def test_nothing_runs_in_dev_mode() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"dev[ _-]?mode", text, re.IGNORECASE)  # not set, not mentioned (issue 16)
    assert "TLS" in text.split("\nname:", 1)[0]  # the header says how MQTT is secured instead


def test_every_mqtt_client_verifies_the_broker_with_the_provisioned_ca() -> None:
    clients = {"hub": SERVICES["hub"]["environment"]["FLEETLOOP_HUB_MQTT_TLS_CA"],
               "hub-init": SERVICES["hub-init"]["environment"]["FLEETLOOP_HUB_MQTT_TLS_CA"],
               "agent": SERVICES["agent"]["environment"]["FLEETLOOP_AGENT_MQTT_TLS_CA"],
               "simulator": option(command(SERVICES["simulator"]), "--tls-ca")}
    written = {name: provisioned(name, path) for name, path in clients.items()}
    assert written == {"hub": f"/provision/hub/{CA_CERT_FILE}", "hub-init": f"/provision/hub/{CA_CERT_FILE}",
                       "agent": f"/provision/devices/{CA_CERT_FILE}", "simulator": f"/provision/sim/{CA_CERT_FILE}"}
    ca_volume = next(m for m in mounts(SERVICES["provision"]) if m.target == "/provision/ca")
    readers = [name for name, service in SERVICES.items() for m in mounts(service) if m.source == ca_volume.source]
    assert readers == ["provision"], "the CA's key is in a volume only provision mounts"


def test_the_simulator_stops_gracefully() -> None:
    for name in ("mosquitto", "hub", "simulator", "agent"):  # more than the engine's default 10 s to flush
        assert SERVICES[name].get("stop_grace_period"), f"{name} has no stop_grace_period"


def test_hub_settings_come_from_provisioned_files() -> None:
    hub_env = SERVICES["hub"]["environment"]
    assert SERVICES["hub-init"]["environment"] == hub_env
    for name in ("hub", "hub-init"):
        config = option(command(SERVICES[name]), "--config")
        secrets_mount = next(m for m in mounts(SERVICES[name]) if config.startswith(m.target + "/"))
        assert secrets_mount.source == "hub-secrets" and secrets_mount.read_only
        for key in ("FLEETLOOP_HUB_TOKENS_FILE", "FLEETLOOP_HUB_SIGNING_KEY_FILE"):
            assert hub_env[key].startswith(secrets_mount.target + "/")
    for name, service in SERVICES.items():  # secrets come from files in volumes, never from this file
        env = set(service.get("environment") or {})
        assert not env & {"FLEETLOOP_HUB_MQTT_PASSWORD", "FLEETLOOP_HUB_TOKENS", "FLEETLOOP_AGENT_MQTT_PASSWORD"}, name


def test_every_container_path_is_on_a_mount(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, load())
    for name in PROJECT:
        values = command(SERVICES[name]) + [str(v) for v in (SERVICES[name].get("environment") or {}).values()]
        for word in values:
            if word.startswith("/"):
                assert host.covers(name, word), f"{name}: {word} is on no volume or bind mount"


# --- the Dockerfile --------------------------------------------------------------------------------------------


def test_dockerfile_builds_lean_non_root_images() -> None:
    stages = dockerfile_stages()
    assert {"build", "runtime", "agent", "hub"} <= set(stages)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copies = dockerfile_instructions("build", "COPY")
    for package in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        name = package.rstrip("*")
        assert f"{name} ./{name}" in copies, f"the build stage does not copy {name}"
    extras = pyproject["project"]["optional-dependencies"]
    assert not [d for d in extras["agent"] if re.match(r"(scikit-learn|scipy|fastapi|uvicorn)\b", d)]
    agent_runs = " ".join(i for s in stage_chain("agent") for i in dockerfile_instructions(s, "RUN"))
    assert "[agent]" in agent_runs and not re.search(r"\[(hub|dev)\]|scikit|scipy|fastapi", agent_runs)
    # slimmed after the install, in the same layer (a later layer's deletions would not shrink the image)
    install = next(i for i in dockerfile_instructions("agent", "RUN") if "[agent]" in i)
    assert install.index("[agent]") < install.index("fleetloop agent slim")
    # and its packages belong to the agent's user (the kernel pages out library pages only for their owner)
    uid = re.search(r"useradd --uid (\d+) --gid (\d+)", DOCKERFILE.read_text())
    assert uid and f"chown -R {uid[1]}:{uid[2]}" in install and "onnxruntime" in install.split("chown")[1]
    load_group("agent").build_parser("fleetloop agent").parse_args(["slim"])
    hub_runs = " ".join(dockerfile_instructions("hub", "RUN"))
    installed = set(re.search(r"\[([a-z,]+)\]", hub_runs)[1].split(","))  # type: ignore[index]
    assert "hub" in installed
    if "postgres" in SERVICES:  # the hub's store_url is postgresql://: psycopg must be in the image
        assert "postgres" in installed and "psycopg" in " ".join(extras["postgres"])
    uid = re.search(r"useradd --uid (\d+) --gid (\d+)", DOCKERFILE.read_text())
    assert uid and uid[1] != "0"
    for stage in ("agent", "hub"):  # numeric, so a runtime can tell it is not root without an /etc/passwd
        assert dockerfile_instructions(stage, "USER") == [f"{uid[1]}:{uid[2]}"], f"{stage} must not run as root"
        assert stage_chain(stage)[1] == "runtime"
    assert "FROM runtime AS agent" in DOCKERFILE.read_text() and "COPY --from=build /wheels" in stages["agent"]
    assert dockerfile_instructions("runtime", "ENTRYPOINT") == ['["fleetloop"]']
    for target_dir in ("/var/lib/fleetloop/hub", "/var/lib/fleetloop/agents", "/models"):
        assert target_dir in stages["runtime"], f"{target_dir} must exist in the image, owned by fleetloop"
        assert any(m.target == target_dir for s in PROJECT.values() for m in mounts(s) if m.named)


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv", ".git", "var", "tests", "**/.env", "**/*.pem", "**/*.db", "mosquitto/passwd"} <= ignored
    copied = {i.split()[0] for i in dockerfile_instructions("build", "COPY")}
    assert not copied & ignored


def test_the_hub_stores_in_the_postgres_service_with_the_password_provision_made(tmp_path: Path) -> None:
    pg = SERVICES["postgres"]
    assert pg["image"].startswith("postgres:") and "build" not in pg  # the official image
    env = pg["environment"]
    assert set(env) <= POSTGRES_IMAGE_ENV and (env["POSTGRES_USER"], env["POSTGRES_DB"]) == (POSTGRES_USER, POSTGRES_DB)
    assert provisioned("postgres", env["POSTGRES_PASSWORD_FILE"]) == "/provision/postgres/password"
    assert all(m.read_only for m in mounts(pg) if m.source == "postgres-secrets")
    readers = {name for name, s in SERVICES.items() for m in mounts(s) if m.source == "postgres-secrets"}
    assert readers == {"provision", "postgres"}  # the database password is the hub's only through its store_url
    data = next(m for m in mounts(pg) if m.source == "postgres-data")
    assert data.named and data.target == "/var/lib/postgresql/data"  # the official image's PGDATA
    words = command(SERVICES["provision"])
    host = option(words, "--postgres-host")
    assert host == "postgres" and option(words, "--postgres-owner") == f"{POSTGRES_UID}:{POSTGRES_UID}"
    probe = pg["healthcheck"]["test"][1].split()
    assert probe[0] == "pg_isready" and (option(probe, "-U"), option(probe, "-d")) == (POSTGRES_USER, POSTGRES_DB)
    # What provision writes is what the hub reads: its store_url names that service, user, database and password.
    provision(tmp_path, slots=1, postgres_host=host)
    secrets = tomllib.loads((tmp_path / "hub" / "secrets.toml").read_text())
    url = urlsplit(secrets["store_url"])
    password = (tmp_path / "postgres" / "password").read_text().strip()
    assert (url.scheme, url.hostname, url.port, url.path) == ("postgresql", host, POSTGRES_PORT, f"/{POSTGRES_DB}")
    assert (url.username, url.password) == (POSTGRES_USER, password) and len(password) >= 24
    for name in ("hub", "hub-init", "ingest"):  # each opens the store: with the secrets file, after postgres is up
        assert SERVICES[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}, name
        assert option(command(SERVICES[name]), "--config") == "/provision/hub/secrets.toml", name


def test_ingest_workers_scale_and_each_has_its_own_session() -> None:
    ingest = SERVICES["ingest"]
    assert command(ingest)[:2] == ["hub", "ingest"] and target(ingest) == "hub"
    assert "container_name" not in ingest and "ports" not in ingest and "hostname" not in ingest
    assert ingest["environment"]["FLEETLOOP_HUB_INGEST_CLIENT_ID"] == ""  # derived from each replica's host name
    assert SERVICES["hub"]["environment"]["FLEETLOOP_HUB_INGEST_CLIENT_ID"]  # the serving hub's stays stable
    shared = {k: v for k, v in ingest["environment"].items() if k != "FLEETLOOP_HUB_INGEST_CLIENT_ID"}
    assert shared == {k: v for k, v in SERVICES["hub"]["environment"].items()
                      if k != "FLEETLOOP_HUB_INGEST_CLIENT_ID"}  # one share group: the same hub settings
