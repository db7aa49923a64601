"""Bodies of ``/dead-letters``: messages the hub refused, and how many of each reason."""

from __future__ import annotations

from pydantic import Field

from hub.api.schemas.base import Public
from hub.store.rows import DeadLetterRow


class DeadLetterPublic(Public):
    """One refused message: when, where from, why, and its first bytes (as text, undecodable bytes replaced)."""

    id: int
    ts: float
    topic: str
    device_id: str | None
    reason: str
    detail: str
    payload_excerpt: str = Field(description="the first bytes kept by the hub, decoded as UTF-8 with replacement")
    payload_size: int

    @classmethod
    def from_row(cls, row: DeadLetterRow) -> DeadLetterPublic:
        return cls(id=row.id, ts=row.ts, topic=row.topic, device_id=row.device_id, reason=row.reason,
                   detail=row.detail, payload_excerpt=row.payload[:512].decode("utf-8", "replace"),
                   payload_size=row.payload_size)
