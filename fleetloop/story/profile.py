"""How long the story's phases last, and the hub and agent settings its compressed clock needs.

The clock: a simulated machine makes one reading per simulated second (``MachineConfig.reading_period_s``)
and the agents read `StoryProfile.rate` of them per wall-clock second, so at the default rate of 100 one
wall second is 100 machine seconds and a 2-minute demo covers about 3 hours of a plant's life. Everything the
hub does with time (drift windows, trigger checks, stage durations) runs on the wall clock, so those settings
differ from the product's defaults, which are made for real time. Every setting that differs from the product's
default is in `OVERRIDES`, with its reason (``tests/story/test_profile.py`` compares every setting and fails on
one that is not listed). The rest are the product's: drift is judged at ``psi_threshold`` 0.2 on at least 200
windows per scope, the agents sample 1 % of their windows for labelling, the technicians label at a plant's pace
(a maintenance log of time ranges on site, a budget of queue items at the hub: ~45 % of the windows end up
labelled, ~320 labels per device-hour of 720 windows, from about ten log entries a machine-hour and 60 queue
answers a site-hour, as measured in tests/e2e/test_closed_loop.py; the hub's label settings are the product's),
the hub runs in production mode, the gate's tolerances and the rollout health rules are the defaults (the fix's
rollout is judged against its own reference, since the control, v1, drifted).

v1's drift reference is the product's re-take (``POST /drift/reference``, each device and cohort with its own
baseline), by the story's operator from the healthy traffic before the injection (`StoryProfile.reference_windows`
a device at least).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from hub.app.settings import DriftSettings, HubSettings
from hub.rollout.settings import HealthLimitsSettings
from hub.training.performance import PerformanceSettings
from hub.training.settings import TrainingSettings
from hub.training.triggers import TriggerPolicy
from shared.errors import ConfigError
from sim.drift import Drift, NewFailureMode, SensorOffset

WINDOW_STEP = 5  # readings per prediction: the initial recipe's window step (models.initial.DEFAULT_WINDOW)
WINDOW_SIZE = 30
BLOCK_READINGS = 100  # readings per evaluation block (training.split_block_s = this / rate)
# Readings per evidence block of the realized-performance test (training.performance.block_s = this / rate): a
# quarter of the product's hour (3,600 readings at 1/s). The story compresses a few plant hours, which hold too few
# hour blocks for the test to decide; a quarter hour still holds about one failure (lives of 300-1,500 readings) and
# enough labels that the 5 drawn are a fair sample of it.
PERFORMANCE_BLOCK_READINGS = 900
# The share of the windows the technicians have labelled by a time (measured, README): the on-site maintenance log's
# failures (~9 % of the windows) and inspections vouching for the time since a machine's last entry (~35 %), and
# the queue's answers (1-3 %).
LABELLED_SHARE = 0.45


Scenario = Literal["drift", "new-failure-mode"]
SCENARIOS: tuple[Scenario, ...] = ("drift", "new-failure-mode")


@dataclass(frozen=True)
class StoryProfile:
    """The story's numbers. `scaled` stretches the timed phases; the rest follows from these."""

    name: str
    devices: int  # agent processes, dealt into the simulator's cohorts in turn
    rate: float  # readings per second per device: the clock's compression factor
    drift_step: int  # reading at which the drifted site's sensors go wrong (the healthy phase before it)
    label_steps: int  # readings per device labelled after the injection before the retrain may start
    recovered_s: float  # how long the recovered fleet is watched before the faulty candidates
    drift_window_s: float
    bucket_s: float  # time bucket of the accuracy plot
    # The initial model: the recipe's defaults (60 machines × 3,000 readings) or a smaller build (30 × 2,500) that
    # takes half the time and makes every retrain's simulated base set (the parent's recipe) half as large, so a
    # retrain takes seconds, not half a minute.
    recipe: Literal["full", "fast"] = "fast"
    drift_site: str = "site-a"  # the site whose sensors a contractor recalibrates badly
    timeout_s: float = 90.0  # longest wait for any one step of the story before it gives up
    # What goes wrong at `drift_step` on `drift_site`: a bad sensor recalibration (the input drifts; the drift job
    # sees it), or a new failure mode (healthy operation reads as before: only the technicians' labels show it).
    scenario: Scenario = "drift"

    def __post_init__(self) -> None:
        if self.devices < 3:
            raise ConfigError("the story needs at least 3 devices (2 cohorts, one of them drifting)")
        if self.rate <= 0 or self.drift_step <= WINDOW_SIZE or self.label_steps <= 0 or self.recovered_s < 0:
            raise ConfigError("rate, drift_step, label_steps must be positive and recovered_s non-negative")

    def scaled(self, factor: float) -> StoryProfile:
        """The same story with its timed phases (healthy, labelling, recovered) `factor` times as long."""
        if not (math.isfinite(factor) and 0.2 <= factor <= 20):
            raise ConfigError("--duration must be a factor between 0.2 and 20")
        return replace(self, drift_step=max(WINDOW_SIZE * 4, round(self.drift_step * factor)),
                       label_steps=max(WINDOW_SIZE * 4, round(self.label_steps * factor)),
                       recovered_s=self.recovered_s * factor, timeout_s=self.timeout_s * max(1.0, factor))

    def for_scenario(self, scenario: Scenario) -> StoryProfile:
        """This story with `scenario` going wrong. ``new-failure-mode`` judges drift over windows 3× as long: the new
        failures barely move v1's fleet-wide score distribution (PSI ~0.05 over 20,000 readings of the fast fleet,
        bench/new_failure_mode.py's machines), but a 2,000-reading window holding a failure or two more than the
        reference did reads as a score shift at times (fleet PSI 0.33 in one of three fast runs), which would be
        the drift job's noise, not the scenario's signal. It also watches the fixed fleet twice as long: its gain is
        judged on the new failures after the fix, a dozen of them in 8 s of the fast story, where one failure caught
        early or late moves recall by several points (gains of 0.07-0.32 measured over 8 s). And it waits up to
        120 s for a step: its one retrain is the story's longest step, and on this shared machine at load average
        35-58 it took 99 s (queued 27 s), past the fast story's 60 s."""
        if scenario == "new-failure-mode":
            return replace(self, scenario=scenario, drift_window_s=3 * self.drift_window_s,
                           recovered_s=2 * self.recovered_s, timeout_s=max(self.timeout_s, 120.0))
        return replace(self, scenario=scenario)

    @property
    def windows_per_s(self) -> float:
        """Predictions per second of the whole fleet."""
        return self.devices * self.rate / WINDOW_STEP

    @property
    def reference_windows(self) -> int:
        """Healthy windows of v1 every device needs before the drift, for the re-taken reference: 1.5 × the drift
        job's ``min_samples``, so that each device's own baseline is used (and not too noisy)."""
        return int(1.5 * DriftSettings().min_samples)

    @property
    def min_labels(self) -> int:
        """Validated labels the retrain waits for: 80 % of what the technicians label, at a plant's pace
        (`LABELLED_SHARE`), of every window up to `label_steps` after the drift (the rest is slack for reports
        and uploads still on their way)."""
        per_device = (self.drift_step + self.label_steps - WINDOW_SIZE) // WINDOW_STEP + 1
        return int(0.8 * LABELLED_SHARE * self.devices * per_device)

    def drifts(self, site: str) -> tuple[Drift, ...]:
        """The bad recalibration on `drift_site`: its vibration sensors read 2 mm/s low from `drift_step` on.

        It hides wear from v1 (recall on the site's machines falls from ~0.8 to ~0.35) and nothing else does:
        a temperature offset as well would cost v1 nothing but teach the retrain that hot is normal, which the
        gate then sees as lost recall on the healthy site.

        The ``new-failure-mode`` scenario: from `drift_step` the site's machines fail differently
        (`sim.drift.NewFailureMode`: the usual wear stops progressing over a failure's last 100 readings, the motor
        current hunts instead); v1's recall on the site's windows falls from ~0.8 to 0.24-0.30
        (bench/new_failure_mode.py), healthy readings are unchanged.
        """
        if site != self.drift_site:
            return ()
        if self.scenario == "new-failure-mode":
            return (NewFailureMode(start_t=self.drift_step),)
        return (SensorOffset(sensor="vibration", offset=-2.0, start_t=self.drift_step),)


PROFILES: dict[str, StoryProfile] = {
    "default": StoryProfile("default", devices=12, rate=100.0, drift_step=3200, label_steps=2500, recovered_s=15.0,
                            drift_window_s=15.0, bucket_s=5.0),
    # Fewer, faster machines: the same number of readings in a third of the time, within a minute in all.
    # The recovered fleet runs 8 s: "after the fix" needs a few hundred failing windows to compare with "before".
    "fast": StoryProfile("fast", devices=4, rate=400.0, drift_step=3600, label_steps=3600, recovered_s=8.0,
                         drift_window_s=5.0, bucket_s=2.0, timeout_s=60.0),
}

# A dozen agent processes share two cores with the hub and its retrains here, so a window may wait for a core for
# hundreds of milliseconds: the p99 budget is 1 s (20 ms; a gateway has its own core).
ROLLOUT_LIMITS = HealthLimitsSettings(latency_p99_ms=1000)


def stage_policies(profile: StoryProfile) -> dict[str, dict[str, float]]:
    """Per-stage policies for ``POST /rollouts``: seconds and tens of windows instead of hours and hundreds."""
    timeout = max(30.0, profile.timeout_s)
    return {"canary": {"min_duration_s": 3, "min_windows": 40, "timeout_s": timeout},
            "fleet": {"min_duration_s": 2, "min_windows": 20, "timeout_s": timeout}}


def training_settings(profile: StoryProfile) -> TrainingSettings:
    labels = profile.min_labels
    return TrainingSettings(
        split_block_s=BLOCK_READINGS / profile.rate, latency_runs=200, check_interval_s=2.0,
        performance=PerformanceSettings(block_s=PERFORMANCE_BLOCK_READINGS / profile.rate),
        triggers=TriggerPolicy(min_new_labels=labels, min_total_labels=labels, cooldown_s=3600.0,
                               schedule_interval_s=None),
    )


def drift_settings(profile: StoryProfile) -> DriftSettings:
    """The product's drift judgement (threshold, sample minimum, test) over windows of seconds instead of a day."""
    return DriftSettings(window_s=profile.drift_window_s, interval_s=min(2.0, profile.drift_window_s / 2))


def hub_settings(profile: StoryProfile, *, data_dir: Path, mqtt_host: str, mqtt_port: int, mqtt_password: str,
                 api_url: str, tokens: dict[str, Any], prefix: str, signing_key_file: Path) -> HubSettings:
    """The story's hub in production mode (broker password, API tokens, a provisioned signing key it never makes
    itself), with the compressed-clock settings."""
    return HubSettings(
        data_dir=data_dir, mqtt_host=mqtt_host, mqtt_port=mqtt_port, mqtt_username="hub",
        mqtt_password=SecretStr(mqtt_password), prefix=prefix, ingest_client_id="demo-ingest",
        artifact_base_url=api_url, tokens=tokens, signing_key_file=signing_key_file, drift=drift_settings(profile),
        training=training_settings(profile), rollout_tick_s=0.5, trace_request_interval_s=1.0,
        rollout_limits=ROLLOUT_LIMITS,
    )


def agent_overrides() -> dict[str, Any]:
    """AgentSettings fields every story agent gets besides its device, broker, model, key and source."""
    return {"stats_interval_s": 1.0, "commit_interval_s": 0.05, "health_windows": 10, "fetch_retry_s": 1.0,
            "health_latency_ms": 1000.0}


_CLOCK = "time compression: the story's clock runs `rate` times faster than a plant's"
_WHERE = "where this hub runs: its own broker, port, data dir and secrets (a deployment's values, not behaviour)"

OVERRIDES: dict[str, str] = {
    # where the hub runs
    "hub.data_dir": _WHERE, "hub.mqtt_port": _WHERE, "hub.mqtt_password": _WHERE, "hub.prefix": _WHERE,
    "hub.tokens": _WHERE, "hub.signing_key_file": _WHERE, "hub.artifact_base_url": _WHERE,
    "hub.ingest_client_id": "a stable id, so a restarted ingest worker resumes its broker session",
    # time compression
    "hub.drift.window_s": f"{_CLOCK}: seconds of stats (a day): each device's window holds min_samples windows",
    "hub.drift.interval_s": f"{_CLOCK}: judged every 2 s (1 h), so the drift is seen within seconds",
    "hub.training.split_block_s": f"{_CLOCK}: 100 readings (1 h) per evaluation block, long enough that "
    "overlapping windows of one block stay on one side of the split",
    "hub.training.performance.block_s": f"{_CLOCK}: 900 readings (a quarter of the product's hour of 3,600) per "
    "evidence block of the realized-performance test: a few plant hours hold too few hour blocks to decide",
    "hub.training.check_interval_s": f"{_CLOCK}: triggers checked every 2 s (300 s)",
    "hub.training.latency_runs": "a quicker gate (200 timed inferences, 300): a dozen agents share two cores",
    "hub.training.triggers.cooldown_s": f"{_CLOCK}: 1 h (6 h), so one story retrains once on drift",
    "hub.training.triggers.schedule_interval_s": "no weekly retrain: with none yet, one would be due at once",
    "hub.training.triggers.min_new_labels": "the drift retrain waits for `min_labels` (labels up to label_steps "
    "readings after the injection), so the candidate has seen the drift: the product's 200 come within seconds",
    "hub.training.triggers.min_total_labels": "as min_new_labels: no retrain before the drift is labelled",
    "hub.rollout_tick_s": f"{_CLOCK}: rollouts look at evidence every 0.5 s (30 s)",
    "hub.trace_request_interval_s": f"{_CLOCK}: devices asked for traces every second (60 s)",
    "hub.rollout_limits.latency_p99_ms": "1 s (20 ms): a dozen agents share two cores with the hub here, so a "
    "window may wait for a core (a gateway has its own)",
    "rollout.canary.min_duration_s": f"{_CLOCK}: seconds (hours)", "rollout.canary.timeout_s": _CLOCK,
    "rollout.canary.min_windows": f"{_CLOCK}: tens of windows per device (hundreds)",
    "rollout.fleet.min_duration_s": f"{_CLOCK}: seconds (hours)", "rollout.fleet.timeout_s": _CLOCK,
    "rollout.fleet.min_windows": f"{_CLOCK}: tens of windows per device (hundreds)",
    "agent.stats_interval_s": f"{_CLOCK}: stats every second (60 s)",
    "agent.commit_interval_s": f"{_CLOCK}: commits every 50 ms (200 ms)",
    "agent.health_windows": f"{_CLOCK}: a 10-window health check after a swap (20)",
    "agent.fetch_retry_s": f"{_CLOCK}: a failed download retried after 1 s (60 s)",
    "agent.health_latency_ms": "1 s (100 ms) p95 in an agent's own check after a swap, as the hub's rollout budget: "
    "the agents share two cores with the hub and its retrains here (a canary rolled back at p95 108-121 ms under "
    "load average 18-40; a gateway has its own core)",
}
"""Every setting of the story that differs from the product's default (dotted: ``hub.*`` HubSettings,
``agent.*`` AgentSettings, ``rollout.<stage>.*`` the stage policies a rollout starts with), and why."""
