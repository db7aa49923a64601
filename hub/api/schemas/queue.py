"""Bodies of ``/queue``: the predictions technicians should label next."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hub.api.schemas.base import Public
from hub.store.rows import QueueReason


class QueueItem(Public):
    trace_id: str
    device_id: str
    ts: float = Field(description="when the device scored the window (unix s, device clock)")
    window_end: float = Field(description="the timestamp of the window's last reading (device clock): what a "
                              "technician checks against the machine's own record")
    score: float
    threshold: float
    kind: Literal["anomaly", "sample"]
    reason: QueueReason = Field(description="anomaly, low_confidence or random (the baseline slice)")
    model_version: str | None
    pick: Literal["random", "disagreement", "uncertainty"] | None = Field(
        default=None, description="why the label-selection policy picked it (the hub's labels.queue_policy select; "
        "random: the unbiased slice); null when the queue ranks by reason")
