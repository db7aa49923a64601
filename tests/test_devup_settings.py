"""``fleetloop dev up --hub-setting NAME=VALUE``: hub settings for one run, as the hub reads them from its env."""

from __future__ import annotations

import pytest

from fleetloop.devup import HUB_SETTINGS, TECHNICIAN_SETTINGS, hub_settings
from shared.errors import ConfigError


def test_hub_settings_override_the_defaults_with_or_without_the_prefix() -> None:
    settings = hub_settings(["drift__interval_s=5", "FLEETLOOP_HUB_ROLLOUT_TICK_S=1", "rollout_policies={\"a\": 1}"])
    assert settings["FLEETLOOP_HUB_DRIFT__INTERVAL_S"] == "5"
    assert settings["FLEETLOOP_HUB_ROLLOUT_TICK_S"] == "1"
    assert settings["FLEETLOOP_HUB_ROLLOUT_POLICIES"] == '{"a": 1}'  # the value is kept whole, '=' and all
    assert settings["FLEETLOOP_HUB_DRIFT__WINDOW_S"] == HUB_SETTINGS["FLEETLOOP_HUB_DRIFT__WINDOW_S"]
    assert hub_settings([]) == HUB_SETTINGS
    with_technicians = hub_settings(["labels__max_device_votes=300"], technicians=True)
    assert with_technicians == {**HUB_SETTINGS, **TECHNICIAN_SETTINGS, "FLEETLOOP_HUB_LABELS__MAX_DEVICE_VOTES": "300"}


def test_a_setting_without_a_value_is_one_line() -> None:
    with pytest.raises(ConfigError, match="--hub-setting 'drift__interval_s': expected NAME=VALUE"):
        hub_settings(["drift__interval_s"])
