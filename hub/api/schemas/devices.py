"""Bodies of ``/devices``: the device registry."""

from __future__ import annotations

from pydantic import Field

from hub.api.schemas.base import Public
from hub.store.rows import Device


class DevicePublic(Public):
    device_id: str
    online: bool
    last_seen: float | None = Field(description="hub time of its newest message")
    model_version: str | None
    shadow_version: str | None
    agent_version: str | None
    site: str | None
    asset_type: str | None
    cohort: str | None = Field(description="explicit cohort, else its site")
    status_ts: float | None
    last_ts: float | None
    first_seen: float | None

    @classmethod
    def from_device(cls, d: Device) -> DevicePublic:
        return cls(
            device_id=d.device_id, online=d.online, last_seen=d.last_seen, model_version=d.model_version,
            shadow_version=d.shadow_version, agent_version=d.agent_version, site=d.site, asset_type=d.asset_type,
            cohort=d.cohort, status_ts=d.status_ts, last_ts=d.last_ts, first_seen=d.first_seen,
        )
