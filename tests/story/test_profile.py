"""The story's profiles: labels it waits for, what the drift job judges, settings the hub and API accept."""

from __future__ import annotations

import pytest

from fleetloop.fleet import plan_fleet
from fleetloop.story.profile import (
    PROFILES,
    ROLLOUT_LIMITS,
    WINDOW_STEP,
    StoryProfile,
    agent_overrides,
    drift_settings,
    hub_settings,
    stage_policies,
    training_settings,
)
from hub.api.schemas import PolicyCreate
from hub.rollout.settings import HealthLimitsSettings
from hub.training.settings import GateSettings
from shared.errors import ConfigError


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_only_the_fleet_is_judged_for_drift(name: str) -> None:
    p = PROFILES[name]
    drift = drift_settings(p)
    per_device = p.rate / WINDOW_STEP * p.drift_window_s
    cohorts: dict[str, int] = {}
    for spec in plan_fleet(p.devices, 1):
        cohorts[spec.cohort] = cohorts.get(spec.cohort, 0) + 1
    assert max(cohorts.values()) * per_device < drift.min_samples <= 0.7 * p.devices * per_device
    assert drift.window_s == p.drift_window_s and drift.psi_threshold == 0.5


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_the_story_has_two_cohorts_some_drifted_and_some_healthy(name: str) -> None:
    p = PROFILES[name]
    specs = plan_fleet(p.devices, 3, drift=lambda s: p.drifts(s.machine.site))
    drifted = [s for s in specs if s.drifts]
    assert len({s.cohort for s in specs}) >= 2 and 0 < len(drifted) < len(specs)
    assert {s.machine.site for s in drifted} == {p.drift_site}
    assert {d.start_t for s in drifted for d in s.drifts} == {p.drift_step}


def test_the_retrain_waits_for_labels_past_the_drift() -> None:
    p = PROFILES["default"]
    windows = (p.drift_step + p.label_steps - 30) // WINDOW_STEP + 1
    assert p.min_labels == int(0.95 * p.devices * windows)
    assert p.min_labels > p.devices * p.drift_step / WINDOW_STEP  # not reachable before the drift
    triggers = training_settings(p).triggers
    assert (triggers.min_total_labels, triggers.schedule_interval_s, triggers.drift_scopes) == (
        p.min_labels, None, ("fleet",))
    assert training_settings(p).split_block_s * p.rate == pytest.approx(100)


def test_scaling_stretches_the_timed_phases_only() -> None:
    p = PROFILES["default"]
    q = p.scaled(2.0)
    assert (q.drift_step, q.label_steps, q.recovered_s) == (2 * p.drift_step, 2 * p.label_steps, 2 * p.recovered_s)
    assert (q.devices, q.rate) == (p.devices, p.rate)
    with pytest.raises(ConfigError):
        p.scaled(0.0)
    with pytest.raises(ConfigError):
        StoryProfile("tiny", devices=2, rate=10, drift_step=100, label_steps=100, recovered_s=1, drift_window_s=1,
                     bucket_s=1, recipe="fast")


def test_hub_settings_and_policies_are_what_the_hub_and_its_api_accept(tmp_path) -> None:
    p = PROFILES["fast"]
    settings = hub_settings(p, data_dir=tmp_path, mqtt_host="127.0.0.1", mqtt_port=1884, mqtt_password="x" * 20,
                            api_url="http://127.0.0.1:9", tokens={"t" * 24: "operator"}, prefix="fleetloop")
    assert settings.dev_mode and settings.tokens and settings.training.gate == GateSettings()  # the product's gate
    assert settings.rollout_tick_s < 1 and settings.drift.interval_s <= 2
    for policy in stage_policies(p).values():
        PolicyCreate(**policy)
    assert settings.rollout_limits == ROLLOUT_LIMITS
    differs = {"latency_p99_ms", "anomaly_rate_factor", "rollback_anomaly_factor"}
    assert ROLLOUT_LIMITS.model_dump(exclude=differs) == HealthLimitsSettings().model_dump(exclude=differs)
    assert set(agent_overrides()) == {"commit_interval_s", "sample_rate", "health_windows", "fetch_retry_s"}
