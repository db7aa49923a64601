"""Every settings problem of the hub is listed in one run (issue 11 #8): a bad field no longer hides the cross-field
checks, and those list all they find."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.app.settings import HubSettings
from shared.errors import ConfigError


def test_field_and_cross_field_problems_are_listed_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("FLEETLOOP_HUB_MQTT_PASSWORD", "FLEETLOOP_HUB_TOKENS", "FLEETLOOP_HUB_DEV_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FLEETLOOP_HUB_API_PORT", "0")  # a bad field from the environment
    config = tmp_path / "hub.toml"
    config.write_text('mqtt_host = "broker.plant"\ntokens = {"short" = "operator"}\n[drift]\nalpha = 2\n')
    with pytest.raises(ConfigError) as caught:
        HubSettings.load(config, data_dir=tmp_path)
    text = str(caught.value)
    for problem in ("api_port: Input should be greater than or equal to 1", "drift.alpha", "no MQTT password",
                    "1 API token(s) shorter than 16", "refusing plain-text MQTT to broker.plant"):
        assert problem in text, text
    assert len(text.splitlines()) == 6  # the heading and one line per problem


def test_valid_fields_with_several_cross_field_problems_list_them_all(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("FLEETLOOP_HUB_MQTT_PASSWORD", "FLEETLOOP_HUB_TOKENS", "FLEETLOOP_HUB_DEV_MODE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError) as caught:
        HubSettings.load(mqtt_host="10.0.0.9")
    text = str(caught.value)
    assert "no MQTT password" in text and "no API tokens" in text and "refusing plain-text MQTT to 10.0.0.9" in text
