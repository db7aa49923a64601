"""AgentSettings read from a file and the environment without pydantic-settings, with its rules: prefix, nested
keys, JSON for structured values, file beating env, and every problem listed in one run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from agent.settings import AgentSettings, SourceSettings
from infra.config import Secret, build, env_values
from shared.errors import ConfigError
from sim.drift import SensorOffset
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
    for problem in ("device_id:", "mqtt_port: Expected `int` >= 1",
                    "retention_rows: Expected `int` >= 1000", "source.units:",
                    "source.colour: Extra inputs are not permitted", "no MQTT password",
                    "refusing plain-text MQTT to broker.plant"):
        assert problem in text, text
    assert text.startswith(f"invalid agent settings ({config}):")


ENVIRONMENTS = [  # (variables without the prefix, what pydantic-settings made of them before issue 12)
    ({"DEVICE_ID": "gw-2", "DEV_MODE": "1", "SITE": "north", "MQTT_PASSWORD": "s3cret", "SAMPLE_RATE": "0.5"},
     {"device_id": "gw-2", "dev_mode": True, "site": "north", "mqtt_password": Secret("s3cret"), "sample_rate": 0.5}),
    ({"DEVICE_ID": "gw-3", "DEV_MODE": "true", "SOURCE__KIND": "csv", "SOURCE__PATH": "/data/x.csv",
      "SOURCE__UNITS": '["1", "2"]', "SOURCE__LIMIT": "10", "HEALTH_RSS_GROWTH_MB": "12.5"},
     {"device_id": "gw-3", "dev_mode": True, "health_rss_growth_mb": 12.5,
      "source": SourceSettings(kind="csv", path=Path("/data/x.csv"), units=["1", "2"], limit=10)}),
    ({"DEVICE_ID": "gw-4", "DEV_MODE": "yes", "SOURCE": '{"kind": "sim", "seed": 3}', "SOURCE__RATE": "7",
      "SOURCE__DRIFTS": json.dumps([{"kind": "sensor_offset", "sensor": SENSORS[0], "start_t": 10, "offset": 2.0}])},
     {"device_id": "gw-4", "dev_mode": True, "source": SourceSettings(
         seed=3, rate=7.0, drifts=[SensorOffset(sensor=SENSORS[0], start_t=10, offset=2.0)])}),
]


@pytest.mark.parametrize(("env", "expected"), ENVIRONMENTS)
def test_env_reading_follows_pydantic_settings_rules(env: dict[str, str], expected: dict[str, Any],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {PREFIX + k: v for k, v in env.items()}
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    assert AgentSettings.load() == AgentSettings(**expected)
    assert build(AgentSettings, env_values(AgentSettings, environ)) == AgentSettings(**expected)
    assert "s3cret" not in repr(AgentSettings.load())  # a password stays out of reprs and logs


def test_settings_built_in_code_are_converted_and_checked(tmp_path: Path) -> None:
    settings = AgentSettings(device_id="gw-5", dev_mode=True, data_dir=str(tmp_path), mqtt_port="1884",  # type: ignore[arg-type]
                             mqtt_password="pw", source={"kind": "sim", "rate": "2"})  # type: ignore[arg-type]
    assert (settings.data_dir, settings.mqtt_port, settings.source.rate) == (tmp_path, 1884, 2.0)
    assert isinstance(settings.mqtt_password, Secret) and settings.mqtt_password.get_secret_value() == "pw"
    with pytest.raises(ValueError) as caught:
        AgentSettings(device_id="gw 5", mqtt_keepalive=1, source={"kind": "csv", "colour": "red"})  # type: ignore[arg-type]
    for problem in ("device_id: invalid device id", "mqtt_keepalive: Expected `int` >= 5",
                    "source.colour: Extra inputs are not permitted"):
        assert problem in str(caught.value)
