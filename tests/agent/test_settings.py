"""AgentSettings read from a file and the environment without pydantic-settings, with its rules: prefix, nested
keys, JSON for structured values, file beating env, and every problem listed in one run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.settings import AgentSettings
from infra.config import env_values
from shared.errors import ConfigError
from sim.machine import SENSORS

PREFIX = "FLEETLOOP_AGENT_"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.upper().startswith(PREFIX):
            monkeypatch.delenv(var)


def test_env_nested_keys_and_json_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLEETLOOP_AGENT_DEVICE_ID", "gw-7")
    monkeypatch.setenv("FLEETLOOP_AGENT_DEV_MODE", "true")
    monkeypatch.setenv("fleetloop_agent_mqtt_port", "1884")  # names are case-insensitive
    monkeypatch.setenv("FLEETLOOP_AGENT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FLEETLOOP_AGENT_SOURCE__KIND", "mqtt")
    monkeypatch.setenv("FLEETLOOP_AGENT_SOURCE__TOPIC", "plant/+/readings")
    monkeypatch.setenv("FLEETLOOP_AGENT_SOURCE__SENSORS", '["temp", "vibration"]')
    monkeypatch.setenv("FLEETLOOP_AGENT_SOURCE__SIM_CONFIG", '{"life_steps": [10, 20]}')
    monkeypatch.setenv("FLEETLOOP_AGENT_NOT_A_SETTING", "ignored, as pydantic-settings ignores it")
    settings = AgentSettings.load()
    assert (settings.device_id, settings.dev_mode, settings.mqtt_port, settings.data_dir) == ("gw-7", True, 1884,
                                                                                            tmp_path)
    assert (settings.source.kind, settings.source.topic) == ("mqtt", "plant/+/readings")
    assert settings.source.sensors == ["temp", "vibration"]
    assert settings.source.sim_config == {"life_steps": [10, 20]}


def test_file_beats_env_and_overrides_beat_both_tables_merged(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('device_id = "from-file"\ndev_mode = true\nmqtt_port = 2000\n[source]\nkind = "sim"\nrate = 5\n')
    monkeypatch.setenv("FLEETLOOP_AGENT_DEVICE_ID", "from-env")
    monkeypatch.setenv("FLEETLOOP_AGENT_MQTT_KEEPALIVE", "45")
    monkeypatch.setenv("FLEETLOOP_AGENT_SOURCE__RATE", "9")
    monkeypatch.setenv("FLEETLOOP_AGENT_SOURCE__SEED", "42")
    settings = AgentSettings.load(config, mqtt_port=3000)
    assert settings.device_id == "from-file" and settings.mqtt_port == 3000 and settings.mqtt_keepalive == 45
    assert (settings.source.rate, settings.source.seed) == (5.0, 42)  # the file's table merged with the env's


def test_constructing_directly_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETLOOP_AGENT_MQTT_PORT", "1999")
    assert AgentSettings(device_id="gw-1", dev_mode=True).mqtt_port == 1883


def test_every_problem_listed_at_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('mqtt_host = "broker.plant"\nretention_rows = 5\n[source]\nkind = "csv"\n')
    monkeypatch.setenv("FLEETLOOP_AGENT_DEVICE_ID", "bad id!")
    monkeypatch.setenv("FLEETLOOP_AGENT_MQTT_PORT", "0")
    monkeypatch.setenv("FLEETLOOP_AGENT_SOURCE__UNITS", "not json")  # a structured value that is not JSON
    monkeypatch.setenv("FLEETLOOP_AGENT_SOURCE__COLOUR", "red")  # a nested key nobody reads
    with pytest.raises(ConfigError) as caught:
        AgentSettings.load(config)
    text = str(caught.value)
    for problem in ("device_id:", "mqtt_port: Input should be greater than or equal to 1",
                    "retention_rows: Input should be greater than or equal to 1000", "source.units:",
                    "source.colour: Extra inputs are not permitted", "no MQTT password",
                    "refusing plain-text MQTT to broker.plant"):
        assert problem in text, text
    assert text.startswith(f"invalid agent settings ({config}):")


class _EnvReference(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, env_nested_delimiter="__", extra="forbid")


def _reference() -> type[BaseSettings]:
    """AgentSettings' fields in a pydantic-settings model: the reference for how env values are read."""
    fields: dict[str, Any] = {name: (f.annotation, f) for name, f in AgentSettings.model_fields.items()}
    return create_model("Reference", __base__=_EnvReference, **fields)


ENVIRONMENTS = [
    {"DEVICE_ID": "gw-2", "DEV_MODE": "1", "SITE": "north", "MQTT_PASSWORD": "s3cret", "SAMPLE_RATE": "0.5"},
    {"DEVICE_ID": "gw-3", "DEV_MODE": "true", "SOURCE__KIND": "csv", "SOURCE__PATH": "/data/x.csv",
     "SOURCE__UNITS": '["1", "2"]', "SOURCE__LIMIT": "10", "HEALTH_RSS_GROWTH_MB": "12.5"},
    {"DEVICE_ID": "gw-4", "DEV_MODE": "yes", "SOURCE": '{"kind": "sim", "seed": 3}', "SOURCE__RATE": "7",
     "SOURCE__DRIFTS": json.dumps([{"kind": "sensor_offset", "sensor": SENSORS[0], "start_t": 10, "offset": 2.0}])},
]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_env_reading_matches_pydantic_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {PREFIX + k: v for k, v in env.items()}
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    reference = _reference()().model_dump()
    ours = AgentSettings.model_validate(env_values(AgentSettings, environ)).model_dump()
    assert ours == reference
