"""Bodies of ``/queue``: the predictions technicians should label next."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hub.api.schemas.base import Public
from hub.store.rows import QueueReason


class QueueItem(Public):
    trace_id: str
    device_id: str
    ts: float
    score: float
    threshold: float
    kind: Literal["anomaly", "sample"]
    reason: QueueReason = Field(description="anomaly, low_confidence or random (the baseline slice)")
    model_version: str | None
