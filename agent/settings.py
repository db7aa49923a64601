"""AgentSettings: one validated settings object, read from env (FLEETLOOP_AGENT_*) and an optional file.

msgspec structs (`infra.config.EnvSettings`) loaded by `infra.config.load_settings`: no pydantic on the gateway.
Built in code (``AgentSettings(device_id=…)``), the values are converted and checked the same way (every bad
field listed), without the environment.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from msgspec import Meta, field

from infra.config import EnvSettings, Secret, Settings, is_loopback, load_settings
from shared.topics import DEFAULT_PREFIX, validate_device_id
from sim.drift import Drift

Positive = Annotated[float, Meta(gt=0)]


class SourceSettings(Settings, kw_only=True):
    """Where readings come from."""

    kind: Literal["sim", "cmapss", "csv", "mqtt"] = "sim"
    path: Annotated[Path | None, Meta(description="file to replay (cmapss, csv)")] = None
    units: Annotated[list[str] | None, Meta(description="replay only these units/engines")] = None
    rate: Annotated[float, Meta(ge=0.0, description="readings per second; 0 = as fast as possible")] = 1.0
    seed: Annotated[int, Meta(description="simulator seed")] = 0
    sim_config: Annotated[dict[str, Any], Meta(description="simulator machine settings")] = field(
        default_factory=dict)
    drifts: Annotated[list[Drift], Meta(description="simulator drifts to inject (sensor offset, …)")] = field(
        default_factory=list)
    start_ts: Annotated[float | None, Meta(
        description="clock origin. sim: reading t is stamped start_ts + t / rate (default: now), so ground truth "
        "can be reconstructed; cmapss: the i-th reading replayed is stamped start_ts + i / rate (default: ts is "
        "the cycle)")] = None
    topic: Annotated[str | None, Meta(description="MQTT topic to read readings from (mqtt)")] = None
    time_column: Annotated[str | None, Meta(description="CSV time column (csv)")] = None
    sensors: Annotated[list[str] | None, Meta(description="CSV columns to use (csv)")] = None
    limit: Annotated[int, Meta(ge=1, description="stop after this many readings")] | None = None
    hold_path: Annotated[Path | None, Meta(
        description="cmapss: a file holding how many readings the replay may release so far; past "
        "it the replay waits (the agent keeps running) until the file allows more (an evaluation that steps a fleet "
        "in lockstep writes it)")] = None

    def problems(self) -> list[str]:
        if self.kind in ("cmapss", "csv") and self.path is None:
            return [f"source kind {self.kind!r} needs source.path"]
        if self.kind == "mqtt" and not self.topic:
            return ["source kind 'mqtt' needs source.topic"]
        return []


class AgentSettings(EnvSettings, kw_only=True):
    """Everything a gateway agent needs. Built at the entry point (`load`) and passed down."""

    ENV_PREFIX: ClassVar[str] = "FLEETLOOP_AGENT_"
    ENV_NESTED_DELIMITER: ClassVar[str] = "__"
    STAND_INS: ClassVar[dict[str, Any]] = {"device_id": "device"}
    CHECKS: ClassVar[dict[str, Callable[[Any], object]]] = {"device_id": validate_device_id}

    device_id: str
    dev_mode: Annotated[bool, Meta(description="allow insecure local defaults (no password)")] = False
    data_dir: Annotated[Path, Meta(description="database and model store live here")] = Path("var/agent")
    prefix: str = DEFAULT_PREFIX
    site: str | None = None
    asset_type: str | None = None

    mqtt_host: str = "127.0.0.1"
    mqtt_port: Annotated[int, Meta(ge=1, le=65535)] = 1883
    mqtt_username: Annotated[str | None, Meta(description="defaults to the device id")] = None
    mqtt_password: Secret | None = None
    mqtt_tls_ca: Path | None = None
    mqtt_keepalive: Annotated[int, Meta(ge=5, le=3600)] = 30

    source: SourceSettings = field(default_factory=SourceSettings)
    initial_model: Annotated[Path | None, Meta(description="model version dir to install if none active")] = None
    model_public_key: Annotated[str | None, Meta(
        description="the hub's Ed25519 model-signing public key, pinned: a file (PEM or base64) or the key itself "
        "(base64 of its 32 bytes, or PEM text); every model must verify; required outside dev_mode")] = None
    fetch_timeout_s: Annotated[float, Meta(gt=0, description="socket timeout when downloading a model")] = 30.0
    fetch_max_mb: Annotated[float, Meta(gt=0, description="largest model artifact accepted")] = 256.0
    fetch_retry_s: Annotated[float, Meta(gt=0, description="first retry of a failed download (then doubles)")] = 60.0
    health_windows: Annotated[int, Meta(ge=1, description="windows a swapped-in model must serve cleanly")] = 20
    health_latency_ms: Annotated[float, Meta(gt=0, description="p95 scoring latency budget in that check")] = 100.0
    shadow_report_s: Annotated[float, Meta(gt=0, description="how often a shadow candidate is reported")] = 60.0
    model_trial: Annotated[bool, Meta(description="try a new model in a memory-limited child process first")] = True
    model_trial_memory_mb: Annotated[float, Meta(gt=0, description="address space a model may use in its trial "
                                                 "beyond the bare interpreter; over it the model is refused")] = 512.0
    model_trial_timeout_s: Annotated[float, Meta(
        gt=0, description="longest a trial (load + warm-up) takes")] = 120.0
    health_rss_growth_mb: Annotated[float, Meta(gt=0, description="resident memory a swapped-in model may add "
                                                "during its health check (None: not watched)")] | None = 256.0
    release_pages_after_s: Annotated[float, Meta(gt=0, description="seconds after start, and after each model "
                                                 "swap, when the library pages touched only while loading are "
                                                 "handed back to the kernel (Linux 5.4+, agent/memory.py); None: "
                                                 "never")] | None = 20.0

    sample_rate: Annotated[float, Meta(ge=0.0, le=1.0, description="random share of predictions sent")] = 0.01
    low_confidence_per_min: Annotated[int, Meta(ge=0, description="cap on low-confidence samples")] = 60
    stats_interval_s: Positive = 60.0
    commit_every: Annotated[int, Meta(ge=1, description="windows per SQLite transaction at most")] = 256
    commit_interval_s: Annotated[float, Meta(gt=0, description="longest a prediction waits to commit")] = 0.2
    retention_rows: Annotated[int, Meta(ge=1000)] = 1_000_000
    retention_mb: Annotated[float, Meta(gt=1.0)] = 512.0
    disk_reserve_mb: Annotated[float, Meta(ge=0.0, description="space held back beside the database so a full "
                                           "disk degrades (oldest rows dropped) instead of stopping writes; "
                                           "0 = none")] = 8.0
    outbox_max_rows: Annotated[int, Meta(ge=100)] = 200_000
    # raw readings of the newest alarm windows kept for the hub to ask for (``upload_windows``), and as many of the
    # newest random-sample windows in a ring of their own (agent.db.RawWindowRow); 0 keeps none. A window of 64
    # readings × 6 sensors takes ~3.6 KB, so the default holds ~1.4 MB at most (feature set 2 keeps 64 readings
    # before each window too: ~2x a 64-reading window's).
    raw_windows_keep: Annotated[int, Meta(ge=0)] = 200
    publish_window: Annotated[int, Meta(ge=1, le=10_000, description="unacknowledged messages at most")] = 100
    ack_timeout_s: Positive = 30.0
    retry_min_s: Positive = 1.0
    retry_max_s: Positive = 60.0
    hub_ack_timeout_s: Annotated[float, Meta(gt=0, description="a message the broker acknowledged but the hub did "
                                             "not is sent again after this (then doubling)")] = 120.0
    hub_ack_max_s: Annotated[float, Meta(gt=0, description="longest wait between such resends")] = 3600.0
    wire_format: Annotated[Literal["auto", "json", "msgpack"], Meta(
        description="how outbox messages go to the hub: auto = MessagePack while the hub says it decodes it (on its "
        "acks and commands), JSON otherwise; json = always JSON (readable, for debugging); msgpack = always")] = "auto"

    def problems(self) -> list[str]:
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
        return problems

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
