"""Settings of end-to-end delivery (`HubSettings.delivery`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DeliverySettings(BaseModel):
    """How the hub acknowledges device messages and chases the ones it misses."""

    model_config = ConfigDict(extra="forbid")

    acks: bool = Field(default=True, description="acknowledge committed sequence numbers to the devices (the agent "
                       "keeps a message until the hub acknowledged it)")
    gap_grace_s: float = Field(default=10.0, ge=0, description="a hole in a device's sequence numbers that lasts "
                               "this long is a gap: counted, logged, recorded, and asked for again")
    check_interval_s: float = Field(default=5.0, gt=0, description="how often holes are looked at")
    resend_retry_s: float = Field(default=60.0, gt=0, description="how often a gap is asked for again")
    max_resend_requests: int = Field(default=10, ge=1, description="requests per gap before the hub gives up on it")
