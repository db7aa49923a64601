"""HubSettings: one validated settings object, read from env (FLEETLOOP_HUB_*) and an optional file.

Built at the entry point and passed down; nothing reads it at import time. Outside ``dev_mode`` the hub
refuses to start without an MQTT password and API tokens, and refuses plain-text MQTT to another host.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.app.loading import load_settings
from hub.console.settings import ConsoleSettings
from hub.delivery.settings import DeliverySettings
from hub.incidents.settings import IncidentSettings
from hub.labels.service import LabelSettings
from hub.mqtt.decoding import MAX_SKEW_S
from hub.rollout.plan import StageName
from hub.rollout.settings import HealthLimitsSettings, StagePolicySettings
from hub.store.retention import RetentionSettings
from hub.training.settings import TrainingSettings
from infra.config import is_loopback, read_settings_file
from shared.codec import MAX_PAYLOAD_BYTES
from shared.errors import ConfigError, TopicError
from shared.topics import DEFAULT_PREFIX, Topics

Role = Literal["technician", "operator", "viewer"]
ROLES: tuple[Role, ...] = ("technician", "operator", "viewer")
MIN_TOKEN_CHARS = 16
BROKER_MAX_PACKET_BYTES = 1024 * 1024  # mosquitto/mosquitto.conf max_packet_size
SHARE_GROUP_CONTEXT = b"fleetloop ingest share group v1"
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class DriftSettings(BaseModel):
    """How the hub decides drift (defaults match hub.drift.report)."""

    model_config = ConfigDict(extra="forbid")

    window_s: float = Field(default=24 * 3600.0, gt=0, description="current window compared with the reference")
    whole_hours: bool = Field(
        default=True, description="start the window on the hour it starts in when that lengthens it by at most "
        "1/24 (a 24 h window by up to an hour: its run then reads roll-ups only, ≤ 3 per device); false, or a "
        "shorter window: start it exactly, adding or subtracting up to half an hour of raw stats rows per device")
    interval_s: float = Field(default=3600.0, gt=0, description="how often drift is evaluated")
    min_samples: int = Field(default=200, ge=1, description="fewer windows give insufficient_data, never drift")
    alpha: float = Field(default=0.01, gt=0, lt=1, description="false discovery rate across features (BH)")
    psi_threshold: float = Field(default=0.2, gt=0, description="minimum PSI for a feature to count as drifted")
    test: Literal["chi2", "ks"] = "chi2"
    auto_reference_s: float | None = Field(
        default=None, gt=0, description="take a version's drift reference from its first N seconds in the field "
        "(from its activation, else its first stats), audited as hub:auto; off (None) by default")
    device_baselines: bool = Field(
        default=False, description="compare each device and cohort with its own baseline in the stored reference "
        "instead of the fleet's (a reference taken with device_baselines does so whatever this says)")
    reference_max_anomaly_rate: float = Field(
        default=0.5, gt=0, le=1, description="a stats period alarming on more windows than this is left out of a "
        "reference taken from the fleet")


class HubSettings(BaseSettings):
    """Everything the hub process needs."""

    model_config = SettingsConfigDict(
        env_prefix="FLEETLOOP_HUB_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    dev_mode: bool = Field(default=False, description="allow insecure local defaults (no password, no tokens)")
    data_dir: Path = Field(default=Path("var/hub"), description="database, models and artifacts live here")
    store_url: str | None = Field(default=None, description="defaults to sqlite:///<data_dir>/hub.db")

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str = "hub"
    mqtt_password: SecretStr | None = None
    mqtt_tls_ca: Path | None = None
    mqtt_keepalive: int = Field(default=30, ge=5, le=3600)
    prefix: str = DEFAULT_PREFIX
    share_group: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.-]+$",
        description="MQTT 5 shared subscription group of the ingest workers. A SECRET: the broker lets any client "
        "join a share group, and a device that joins the hub's takes a share of the fleet's messages it may not "
        "read, which the broker then drops. Default: derived from the MQTT password (every worker of one hub has "
        "the same), so devices cannot name it",
    )

    ingest_client_id: str | None = Field(
        default=None,
        description="stable MQTT client id of this ingest worker (unique per worker); a restarted worker with "
        "the same id resumes its session and gets the messages it had not acknowledged",
    )
    jobs_lease_ttl_s: float = Field(
        default=30.0, gt=0, le=3600, description="the background jobs (drift, triggers, rollouts, trace requests, "
        "gaps, retention, incidents) run in one hub process at a time, the holder of a lease in the store; a killed "
        "holder is replaced within this time")
    ingest_session_expiry_s: int = Field(default=3600, ge=0, description="how long the broker keeps a dead "
                                         "worker's session (and its share of messages) for it to come back")
    ingest_batch_size: int = Field(default=500, ge=1, le=100_000)
    ingest_flush_interval_s: float = Field(default=0.2, gt=0, le=60)
    max_payload_bytes: int = Field(default=MAX_PAYLOAD_BYTES, ge=1024, le=BROKER_MAX_PACKET_BYTES)
    ingest_rate_per_device_s: float = Field(
        default=100.0, ge=0, allow_inf_nan=False, description="messages a second one device may send on average "
        "(a token bucket per device; 0 = no limit); the excess is dropped and counted (hub.mqtt.ratelimit)")
    ingest_burst_per_device: int = Field(default=5000, ge=1, description="messages one device may send at once "
                                         "(an outbox draining its backlog) before its rate applies")
    max_clock_skew_s: float = Field(
        default=MAX_SKEW_S, gt=0, allow_inf_nan=False, description="how far ahead of the hub's clock a device's "
        "ts may be: later data is dead-lettered (clock_skew), a later status is stamped with the receive time")
    retention: RetentionSettings = Field(default_factory=RetentionSettings)

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=256 * 1024 * 1024,
                                    description="larger request bodies get 413 before a byte is read")
    tokens: dict[str, Role] = Field(default_factory=dict, repr=False, description="API token → role")
    tokens_file: Path | None = Field(default=None, description="JSON or TOML file mapping token → role")

    signing_key_file: Path | None = Field(
        default=None, description="Ed25519 key that signs model versions (default <data_dir>/keys/…); created "
                                  "on first start only in dev_mode")
    drift: DriftSettings = Field(default_factory=DriftSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    artifact_base_url: str | None = Field(
        default=None, description="the hub API URL devices can reach: they fetch model artifacts from "
        "<url>/models/<version>/artifact. Default: http://<api_host>:<api_port> (the machine's name when the API "
        "listens on all interfaces); the hub checks it answers before a rollout starts")
    rollout_tick_s: float = Field(default=30.0, gt=0, description="how often rollouts look at device evidence")
    rollout_limits: HealthLimitsSettings = Field(
        default_factory=HealthLimitsSettings, description="health limits of every rollout (a rollout may override "
        "some): e.g. FLEETLOOP_HUB_ROLLOUT_LIMITS__ROLLBACK_ANOMALY_FACTOR=10 or [rollout_limits] in the file")
    rollout_policies: dict[StageName, StagePolicySettings] = Field(
        default_factory=dict, description="default stage policies of every rollout (a start may override them; "
        "unset stages keep hub.rollout.DEFAULT_POLICIES: hours), e.g. FLEETLOOP_HUB_ROLLOUT_POLICIES="
        "'{\"canary\": {\"min_duration_s\": 600, \"min_windows\": 100, \"timeout_s\": 3600}}'")
    labels: LabelSettings = Field(default_factory=LabelSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    incidents: IncidentSettings = Field(
        default_factory=IncidentSettings, description="how alarm windows group into incidents (gap_s, min_windows, "
        "quiet_s) and who is told per site (webhooks signed with a secret from the env or the settings file, "
        "MQTT), e.g. FLEETLOOP_HUB_INCIDENTS__GAP_S=300 FLEETLOOP_HUB_INCIDENTS__MIN_WINDOWS=3")
    console: ConsoleSettings = Field(
        default_factory=ConsoleSettings, description="the web console at /console: the key that signs its session "
        "cookies (default: derived from the API tokens) and how long a session lasts")
    trace_request_interval_s: float = Field(default=60.0, gt=0, description="how often to ask devices for traces "
                                            "that annotations name but the hub has not seen")
    raw_window_interval_s: float = Field(default=30.0, gt=0, description="how often to ask devices for the raw "
                                         "window of open incidents and re-send unanswered window requests")
    raw_window_retention_days: float = Field(default=30.0, gt=0, description="how long raw sensor windows (and "
                                             "requests for them) are kept")
    raw_window_learn_per_pass: int = Field(
        default=50, ge=0, description="random-slice windows (the unbiased field readings feature set 2's regime "
        "statistics are learnt from) asked of devices at most each raw-window pass, the newest first; 0 = none")
    raw_window_learn_per_day: int = Field(
        default=500, ge=0, description="random-slice windows asked for at most in any 24 hours: regime statistics "
        "need a few hundred, and each is kept raw_window_retention_days")
    raw_window_learn_lookback_s: float = Field(
        default=86400.0, gt=0, description="how far back the random slice's windows are asked for (a device keeps "
        "only its newest sampled windows: agent raw_windows_keep)")

    @model_validator(mode="after")
    def _secure(self) -> HubSettings:
        problems = []
        try:
            Topics(self.prefix)
        except TopicError as exc:
            problems.append(str(exc))
        if self.tokens_file is not None:
            try:
                self.tokens = {**_read_tokens(self.tokens_file), **self.tokens}
            except ValueError as exc:
                problems.append(str(exc))
        if not self.dev_mode:
            problems += _production_problems(self)
        if problems:  # every problem at once, one per line (infra.config lists them)
            raise ValueError("\n".join(problems))
        return self

    @property
    def store(self) -> str:
        """The store URL in effect."""
        return self.store_url or f"sqlite:///{self.data_dir / 'hub.db'}"

    @property
    def artifact_base(self) -> str:
        """The artifact base URL in effect: `artifact_base_url`, else the URL this hub's API is served on."""
        if self.artifact_base_url:
            return self.artifact_base_url.rstrip("/")
        host = self.api_host
        if host in WILDCARD_HOSTS:  # listening everywhere: devices reach it by the machine's name
            host = socket.getfqdn()
        elif ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        return f"http://{host}:{self.api_port}"

    @property
    def password(self) -> str | None:
        return None if self.mqtt_password is None else self.mqtt_password.get_secret_value()

    @property
    def ingest_share_group(self) -> str:
        """The share group in effect: `share_group`, else a name derived from the MQTT password (HMAC-SHA256), else
        (dev mode without a password) ``hub``."""
        if self.share_group:
            return self.share_group
        password = self.password
        if not password:
            return "hub"
        return "hub-" + hmac.new(password.encode(), SHARE_GROUP_CONTEXT, hashlib.sha256).hexdigest()[:32]

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    @classmethod
    def load(cls, path: Path | None = None, **overrides: Any) -> HubSettings:
        """Settings from a TOML or JSON file (if given), then env, then `overrides`; ConfigError if invalid."""
        return load_settings(cls, "hub", path, overrides)



def _production_problems(s: HubSettings) -> list[str]:
    """What outside dev mode is refused: no MQTT password, no or short API tokens, plain-text MQTT to another host."""
    problems = []
    if s.mqtt_password is None or not s.mqtt_password.get_secret_value():
        problems.append("no MQTT password: set FLEETLOOP_HUB_MQTT_PASSWORD (or mqtt_password in the config file); "
                        "only dev_mode=true may run without one")
    if not s.tokens:
        problems.append("no API tokens: set FLEETLOOP_HUB_TOKENS to a JSON object of token → role "
                        f"({', '.join(ROLES)}), or tokens_file to a JSON/TOML file of them; only dev_mode=true may "
                        "run without tokens")
    short = sum(1 for token in s.tokens if len(token) < MIN_TOKEN_CHARS)
    if short:
        problems.append(f"{short} API token(s) shorter than {MIN_TOKEN_CHARS} characters: generate them with "
                        "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    problems += s.incidents.secret_problems()
    problems += s.console.secret_problems()
    if s.mqtt_tls_ca is None and not is_loopback(s.mqtt_host):
        problems.append(f"refusing plain-text MQTT to {s.mqtt_host}: set mqtt_tls_ca, or dev_mode=true for testing")
    return problems


def _read_tokens(path: Path) -> dict[str, Role]:
    """Token → role from a JSON or TOML file; ValueError (reported by the validator) if unusable."""
    try:
        data = read_settings_file(path)
    except ConfigError as exc:  # validators report ValueError; the message names the file and the problem
        raise ValueError(f"tokens_file: {exc}") from None
    bad = sorted({str(role) for role in data.values() if role not in ROLES})
    if bad:
        raise ValueError(f"tokens_file {path}: unknown role(s) {', '.join(bad)}; use {', '.join(ROLES)}")
    return {str(token): role for token, role in data.items()}
