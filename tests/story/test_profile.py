"""The story's profiles: labels it waits for, what the drift job judges, settings the hub and API accept, and
every setting that differs from the product's default listed with its reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import BaseModel

from agent.settings import AgentSettings
from fleetloop.fleet import plan_fleet
from fleetloop.story.profile import (
    LABELLED_SHARE,
    OVERRIDES,
    PROFILES,
    ROLLOUT_LIMITS,
    SCENARIOS,
    WINDOW_STEP,
    Scenario,
    StoryProfile,
    agent_overrides,
    drift_settings,
    hub_settings,
    stage_policies,
    training_settings,
)
from hub.api.schemas import PolicyCreate
from hub.app.settings import DriftSettings, HubSettings
from hub.rollout import DEFAULT_POLICIES
from hub.training.settings import GateSettings
from shared.errors import ConfigError


def leaves(model: BaseModel | msgspec.Struct, prefix: str) -> dict[str, Any]:
    """Every setting of `model` (the hub's pydantic models, the agent's msgspec structs) by dotted path, nested
    settings walked into."""
    out: dict[str, Any] = {}
    names = model.__struct_fields__ if isinstance(model, msgspec.Struct) else type(model).model_fields
    for name in names:
        value = getattr(model, name)
        if isinstance(value, BaseModel | msgspec.Struct):
            out.update(leaves(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


def story_settings(tmp_path: Path, p: StoryProfile) -> dict[str, Any]:
    """Every setting the story gives the hub, each agent and each rollout stage, by dotted path."""
    hub = hub_settings(p, data_dir=tmp_path, mqtt_host="127.0.0.1", mqtt_port=1884, mqtt_password="x" * 20,
                       api_url="http://127.0.0.1:9", tokens={"t" * 24: "operator"}, prefix="fleetloop-demo",
                       signing_key_file=tmp_path / "key.pem")
    agent = AgentSettings(device_id="dev-1", mqtt_password="x", **agent_overrides())
    stages = {f"rollout.{stage}.{k}": v for stage, policy in stage_policies(p).items() for k, v in policy.items()}
    return {**leaves(hub, "hub."), **leaves(agent, "agent."), **stages}


def product_defaults() -> dict[str, Any]:
    stages = {f"rollout.{stage}.{k}": getattr(policy, k) for stage, policy in DEFAULT_POLICIES.items()
              for k in ("min_duration_s", "min_windows", "timeout_s", "min_reporting")}
    return {**leaves(HubSettings.model_construct(), "hub."),
            **leaves(AgentSettings(device_id="dev-1", mqtt_password="x"), "agent."), **stages}


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_setting_is_the_products_or_a_listed_override(name: str, scenario: Scenario, tmp_path: Path) -> None:
    story, product = story_settings(tmp_path, PROFILES[name].for_scenario(scenario)), product_defaults()
    assert set(story) <= set(product), set(story) - set(product)  # a stage setting the product does not have
    differs = {k for k, v in story.items() if v != product[k]}
    assert differs - set(OVERRIDES) == set(), "overrides without a reason in fleetloop.story.profile.OVERRIDES"
    assert set(OVERRIDES) - differs == set(), "listed overrides the story no longer makes"
    assert all(len(reason) > 20 for reason in OVERRIDES.values())
    # what issue 13 asked for: the product's drift judgement, label sampling and production mode
    assert {k for k in differs if k.startswith("hub.drift.")} == {"hub.drift.window_s", "hub.drift.interval_s"}
    assert not {"hub.dev_mode", "agent.sample_rate", "agent.dev_mode"} & differs
    # The label, gate and drift-threshold settings are the product's: the technicians label at a plant's pace.
    assert [k for k in differs if k.startswith(("hub.labels.", "hub.training.gate.", "hub.drift.psi"))] == []


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_each_device_has_its_own_baseline_and_is_judged_in_every_drift_window(name: str) -> None:
    p = PROFILES[name]
    drift = drift_settings(p)
    per_device = p.rate / WINDOW_STEP * drift.window_s
    assert (drift.min_samples, drift.psi_threshold) == (DriftSettings().min_samples, DriftSettings().psi_threshold)
    assert p.reference_windows >= drift.min_samples  # the re-take gives each device a baseline of its own
    assert per_device - p.rate / WINDOW_STEP >= drift.min_samples  # a window missing a stats period still counts
    assert p.drift_step / WINDOW_STEP > 2 * p.reference_windows  # the reference is taken before the drift


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
    assert p.min_labels == int(0.8 * LABELLED_SHARE * p.devices * windows)
    assert p.min_labels > LABELLED_SHARE * p.devices * p.drift_step / WINDOW_STEP  # not reachable before the drift
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
                            api_url="http://127.0.0.1:9", tokens={"t" * 24: "operator"}, prefix="fleetloop",
                            signing_key_file=tmp_path / "key.pem")
    assert not settings.dev_mode and settings.tokens and settings.training.gate == GateSettings()  # the product's
    assert settings.rollout_tick_s < 1 and settings.drift.interval_s <= 2
    for policy in stage_policies(p).values():
        PolicyCreate(**policy)
    assert settings.rollout_limits == ROLLOUT_LIMITS
    with pytest.raises(ConfigError, match="no API tokens"):  # production mode: the product's refusals apply
        HubSettings.load(**{**settings.model_dump(exclude={"tokens"}), "mqtt_password": "x" * 20})


def test_the_new_failure_mode_scenario_injects_the_fault_on_the_drift_site_only() -> None:
    from sim.drift import NewFailureMode, SensorOffset

    fast = PROFILES["fast"]
    scenario = fast.for_scenario("new-failure-mode")
    assert scenario.drifts(fast.drift_site) == (NewFailureMode(start_t=fast.drift_step),)
    assert scenario.drifts("site-b") == () and isinstance(fast.drifts(fast.drift_site)[0], SensorOffset)
    assert (scenario.drift_window_s, scenario.recovered_s) == (3 * fast.drift_window_s, 2 * fast.recovered_s)
    assert scenario.timeout_s == 120.0
    assert fast.for_scenario("drift") == fast
