"""HubSettings.rollout_limits: the health limits of every rollout, from defaults, env or file, validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.app.service import HubService
from hub.app.settings import HubSettings
from hub.rollout import HealthLimits
from shared.errors import ConfigError


def test_defaults_are_the_machines() -> None:
    assert HubSettings(dev_mode=True).rollout_limits.to_limits() == HealthLimits()


def test_env_and_file_set_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "hub.toml"
    config.write_text("dev_mode = true\n[rollout_limits]\nrollback_anomaly_factor = 12\nmin_rate_windows = 200\n")
    monkeypatch.setenv("FLEETLOOP_HUB_ROLLOUT_LIMITS__MAX_SCORE_PSI", "0.8")
    limits = HubSettings.load(config).rollout_limits.to_limits()
    assert limits == HealthLimits(rollback_anomaly_factor=12.0, min_rate_windows=200, max_score_psi=0.8)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"anomaly_rate_factor": 8}, "anomaly_rate_factor (8) must not exceed rollback_anomaly_factor (5)"),
        ({"anomaly_rate_floor": 0}, "rollout_limits.anomaly_rate_floor: Input should be greater than 0"),
        ({"max_error_rate": -0.1}, "rollout_limits.max_error_rate: Input should be greater than or equal to 0"),
        ({"latency_p99_ms": float("inf")}, "rollout_limits.latency_p99_ms: Input should be a finite number"),
        ({"min_rate_windows": 0}, "rollout_limits.min_rate_windows: Input should be greater than or equal to 1"),
        ({"max_psi": 1.0}, "rollout_limits.max_psi: Extra inputs are not permitted"),
    ],
)
def test_bad_limits_are_refused_with_the_reason(values: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match="invalid hub settings") as info:
        HubSettings.load(None, dev_mode=True, rollout_limits=values)
    assert message in str(info.value)


def test_the_hub_service_plans_rollouts_with_them(tmp_path: Path) -> None:
    settings = HubSettings(dev_mode=True, data_dir=tmp_path, rollout_limits={"rollback_anomaly_factor": 9})
    service = HubService(settings)
    try:
        assert service.rollouts.limits == HealthLimits(rollback_anomaly_factor=9.0)
        assert service.rollouts.drift_max_age_s == settings.drift.window_s + settings.drift.interval_s
    finally:
        service.store.close()


def test_rollout_policies_set_the_default_stages_of_every_rollout(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A fleet watched by hand (or a test) shortens the stages once, for starts and reverts alike."""
    from hub.rollout import DEFAULT_POLICIES, StagePolicy

    monkeypatch.setenv("FLEETLOOP_HUB_ROLLOUT_POLICIES", '{"canary": {"min_duration_s": 2, "min_windows": 5, '
                       '"timeout_s": 60}}')
    settings = HubSettings.load(None, dev_mode=True, data_dir=tmp_path)
    service = HubService(settings)
    try:
        assert service.rollouts.policies == {"canary": StagePolicy(2.0, 5, 60.0)}
    finally:
        service.store.close()
    assert "fleet" not in settings.rollout_policies and DEFAULT_POLICIES["fleet"].min_duration_s == 3600
    with pytest.raises(ConfigError, match="min_duration_s \\(9\\) must be below timeout_s \\(5\\)"):
        HubSettings.load(None, dev_mode=True, rollout_policies={"fleet": {"min_duration_s": 9, "min_windows": 1,
                                                                          "timeout_s": 5}})
