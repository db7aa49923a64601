"""AgentSettings: one validated settings object, read from env (FLEETLOOP_AGENT_*) and an optional file.

A plain pydantic model read by `infra.config.load_settings` (no pydantic-settings on the gateway: see
`infra.config.EnvSettings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from infra.config import EnvSettings, is_loopback, load_settings
from shared.errors import TopicError
from shared.topics import DEFAULT_PREFIX, validate_device_id
from sim.drift import Drift


class SourceSettings(BaseModel):
    """Where readings come from."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["sim", "cmapss", "csv", "mqtt"] = "sim"
    path: Path | None = Field(default=None, description="file to replay (cmapss, csv)")
    units: list[str] | None = Field(default=None, description="replay only these units/engines")
    rate: float = Field(default=1.0, ge=0.0, description="readings per second; 0 = as fast as possible")
    seed: int = Field(default=0, description="simulator seed")
    sim_config: dict[str, Any] = Field(default_factory=dict, description="simulator machine settings")
    drifts: list[Drift] = Field(default_factory=list, description="simulator drifts to inject (sensor offset, …)")
    start_ts: float | None = Field(default=None, description="clock origin. sim: reading t is stamped start_ts + "
                                   "t / rate (default: now), so ground truth can be reconstructed; cmapss: the i-th "
                                   "reading replayed is stamped start_ts + i / rate (default: ts is the cycle)")
    topic: str | None = Field(default=None, description="MQTT topic to read readings from (mqtt)")
    time_column: str | None = Field(default=None, description="CSV time column (csv)")
    sensors: list[str] | None = Field(default=None, description="CSV columns to use (csv)")
    limit: int | None = Field(default=None, ge=1, description="stop after this many readings")

    @model_validator(mode="after")
    def _needs(self) -> SourceSettings:
        if self.kind in ("cmapss", "csv") and self.path is None:
            raise ValueError(f"source kind {self.kind!r} needs source.path")
        if self.kind == "mqtt" and not self.topic:
            raise ValueError("source kind 'mqtt' needs source.topic")
        return self


class AgentSettings(EnvSettings):
    """Everything a gateway agent needs. Built at the entry point (`load`) and passed down."""

    ENV_PREFIX: ClassVar[str] = "FLEETLOOP_AGENT_"
    ENV_NESTED_DELIMITER: ClassVar[str] = "__"
    # what stands in for a required field that failed, so the cross-field checks still run (infra.config)
    STAND_INS: ClassVar[dict[str, Any]] = {"device_id": "device"}

    device_id: str
    dev_mode: bool = Field(default=False, description="allow insecure local defaults (no password)")
    data_dir: Path = Field(default=Path("var/agent"), description="database and model store live here")
    prefix: str = DEFAULT_PREFIX
    site: str | None = None
    asset_type: str | None = None

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str | None = Field(default=None, description="defaults to the device id")
    mqtt_password: SecretStr | None = None
    mqtt_tls_ca: Path | None = None
    mqtt_keepalive: int = Field(default=30, ge=5, le=3600)

    source: SourceSettings = Field(default_factory=SourceSettings)
    initial_model: Path | None = Field(default=None, description="model version dir to install if none active")
    model_public_key: str | None = Field(
        default=None,
        description="the hub's Ed25519 model-signing public key, pinned: a file (PEM or base64) or the key "
        "itself (base64 of its 32 bytes, or PEM text); every model must verify; required outside dev_mode",
    )
    fetch_timeout_s: float = Field(default=30.0, gt=0, description="socket timeout when downloading a model")
    fetch_max_mb: float = Field(default=256.0, gt=0, description="largest model artifact accepted")
    fetch_retry_s: float = Field(default=60.0, gt=0, description="first retry of a failed download (then doubles)")
    health_windows: int = Field(default=20, ge=1, description="windows a swapped-in model must serve cleanly")
    health_latency_ms: float = Field(default=100.0, gt=0, description="p95 scoring latency budget in that check")
    shadow_report_s: float = Field(default=60.0, gt=0, description="how often a shadow candidate is reported")
    model_trial: bool = Field(default=True, description="try a new model in a memory-limited child process first")
    model_trial_memory_mb: float = Field(default=512.0, gt=0, description="address space a model may use in its "
                                         "trial beyond the bare interpreter; over it the model is refused")
    model_trial_timeout_s: float = Field(default=120.0, gt=0, description="longest a trial (load + warm-up) takes")
    health_rss_growth_mb: float | None = Field(default=256.0, gt=0, description="resident memory a swapped-in "
                                               "model may add during its health check (None: not watched)")

    sample_rate: float = Field(default=0.01, ge=0.0, le=1.0, description="random share of predictions sent")
    low_confidence_per_min: int = Field(default=60, ge=0, description="cap on low-confidence samples")
    stats_interval_s: float = Field(default=60.0, gt=0)
    commit_every: int = Field(default=256, ge=1, description="windows per SQLite transaction at most")
    commit_interval_s: float = Field(default=0.2, gt=0, description="longest a prediction waits to commit")
    retention_rows: int = Field(default=1_000_000, ge=1000)
    retention_mb: float = Field(default=512.0, gt=1.0)
    disk_reserve_mb: float = Field(default=8.0, ge=0.0, description="space held back beside the database so a "
                                   "full disk degrades (oldest rows dropped) instead of stopping writes; 0 = none")
    outbox_max_rows: int = Field(default=200_000, ge=100)
    # raw readings of the newest alarm windows kept for the hub to ask for (``upload_windows``); 0 keeps none.
    # A window of 64 readings × 6 sensors takes ~3.6 KB, so the default holds ~0.7 MB at most.
    raw_windows_keep: int = 200
    publish_window: int = Field(default=100, ge=1, le=10_000, description="unacknowledged messages at most")
    ack_timeout_s: float = Field(default=30.0, gt=0)
    retry_min_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)
    hub_ack_timeout_s: float = Field(default=120.0, gt=0, description="a message the broker acknowledged but the "
                                     "hub did not is sent again after this (then doubling)")
    hub_ack_max_s: float = Field(default=3600.0, gt=0, description="longest wait between such resends")

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, value: str) -> str:
        try:
            return validate_device_id(value)
        except TopicError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _secure(self) -> AgentSettings:
        problems = []
        if self.mqtt_password is None and not self.dev_mode:
            problems.append(
                "no MQTT password: set FLEETLOOP_AGENT_MQTT_PASSWORD (or mqtt_password in the config file); "
                "only dev_mode=true may run without one"
            )
        if not self.dev_mode and self.mqtt_tls_ca is None and not is_loopback(self.mqtt_host):
            problems.append(
                f"refusing plain-text MQTT to {self.mqtt_host}: set mqtt_tls_ca, or dev_mode=true for testing"
            )
        if problems:  # every problem at once, one per line (infra.config lists them)
            raise ValueError("\n".join(problems))
        return self

    @property
    def db_path(self) -> Path:
        return self.data_dir / "agent.db"

    @property
    def model_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def username(self) -> str:
        return self.mqtt_username or self.device_id

    @classmethod
    def load(cls, path: Path | None = None, **overrides: Any) -> AgentSettings:
        """Settings from a TOML or JSON file (if given), then env, then `overrides`; ConfigError if invalid."""
        return load_settings(cls, "agent", path, overrides)
