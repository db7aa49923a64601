"""No Docker engine here: check the compose file and Dockerfile for what can be checked without one."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from agent.settings import AgentSettings
from fleetloop.cli import GROUPS

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_parses_and_references_existing_files():
    compose = _compose()
    assert {"mosquitto", "agent"} <= set(compose["services"])
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and not source.startswith("./var/"):  # ./var is created at deploy time
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / "Dockerfile").is_file()
            targets = re.findall(r"^FROM \S+ AS (\S+)", (ROOT / "Dockerfile").read_text(), re.M)
            assert build["target"] in targets
        for dep, cond in (service.get("depends_on") or {}).items():
            assert dep in compose["services"], f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in compose["services"][dep], f"{dep} has no healthcheck"


def test_compose_commands_are_real_cli_commands():
    compose = _compose()
    for name, service in compose["services"].items():
        command = service.get("command")
        if not command or "build" not in service:
            continue
        words = command if isinstance(command, list) else shlex.split(command)
        target = service["build"]["target"]
        group = "agent" if target == "agent" else words[0]
        assert group in GROUPS, f"{name}: unknown command group {group!r}"
        from fleetloop.cli import load_group

        args = words if target == "agent" else words[1:]
        load_group(group).build_parser(f"fleetloop {group}").parse_args(args)


def test_compose_environment_matches_agent_settings():
    fields = set(AgentSettings.model_fields)
    for name, service in _compose()["services"].items():
        for key in service.get("environment", {}):
            if key.startswith("FLEETLOOP_AGENT_"):
                field = key.removeprefix("FLEETLOOP_AGENT_").lower().split("__")[0]
                assert field in fields, f"{name}: {key} is not an AgentSettings field"


def test_dockerfile_copies_every_package_and_agent_image_has_no_hub_extra():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("shared", "agent", "hub", "models", "sim", "fleetloop", "mosquitto"):
        assert f"COPY {package} ./{package}" in dockerfile
    agent_stage = dockerfile.split("AS agent", 1)[1].split("FROM", 1)[0]
    assert "'.[agent]'" in agent_stage and "hub]" not in agent_stage
