"""Settings of incidents and their notifications (`HubSettings.incidents`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr

MIN_SECRET_CHARS = 16


class WebhookSettings(BaseModel):
    """One plant system's HTTP endpoint. The secret signs every body (HMAC-SHA256); it comes from the settings
    file or the environment (``FLEETLOOP_HUB_INCIDENTS__SITES``), never from the repository."""

    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(description="where incident events are POSTed (JSON)")
    secret: SecretStr = Field(description="shared secret of the X-Fleetloop-Signature header (sha256=<hex HMAC>)")
    timeout_s: float = Field(default=5.0, gt=0, le=60, description="per attempt")


class SiteNotifySettings(BaseModel):
    """Who hears of a site's incidents."""

    model_config = ConfigDict(extra="forbid")

    webhooks: list[WebhookSettings] = Field(default_factory=list)
    mqtt: bool = Field(default=False, description="publish each event (QoS 1, not retained) on "
                       "<prefix>/_hub/incidents/<site>")


class IncidentSettings(BaseModel):
    """How alarm windows become incidents, when they close on their own, and who is told."""

    model_config = ConfigDict(extra="forbid")

    gap_s: float = Field(default=600.0, gt=0, allow_inf_nan=False, description="alarm windows of one device at "
                         "most this far apart (device clock) join one incident (the debounce)")
    min_windows: int = Field(default=3, ge=1, description="an incident opens (is listed and notified) once it has "
                             "this many alarm windows; a group that stays below it for gap_s is dropped as a blip")
    quiet_s: float = Field(default=3600.0, gt=0, allow_inf_nan=False, description="an open or acknowledged "
                           "incident without a new alarm window for this long closes on its own (closed)")
    interval_s: float = Field(default=10.0, gt=0, description="how often new anomalies are grouped")
    batch: int = Field(default=5000, ge=1, le=100_000, description="anomalies read per pass")
    notify_interval_s: float = Field(default=2.0, gt=0, description="how often due notifications are sent")
    retry_base_s: float = Field(default=5.0, gt=0, description="first retry delay of a failed delivery; doubles "
                                "each attempt")
    retry_max_s: float = Field(default=900.0, gt=0, description="longest delay between attempts")
    max_attempts: int = Field(default=10, ge=1, description="attempts before a delivery is given up (failed)")
    sites: dict[str, SiteNotifySettings] = Field(
        default_factory=dict, description="notifications per site; the key '*' applies to every site (and to "
        "devices without one), e.g. FLEETLOOP_HUB_INCIDENTS__SITES='{\"plant-a\": {\"mqtt\": true, \"webhooks\": "
        "[{\"url\": \"https://cmms.example/hook\", \"secret\": \"…\"}]}}'")

    def secret_problems(self) -> list[str]:
        """Webhook secrets too short to sign with (refused outside dev mode)."""
        return [f"incidents.sites[{site!r}]: a webhook secret is shorter than {MIN_SECRET_CHARS} characters"
                for site, s in self.sites.items() for w in s.webhooks
                if len(w.secret.get_secret_value()) < MIN_SECRET_CHARS]
