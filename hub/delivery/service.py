"""The gap monitor: turns lasting holes in devices' sequence numbers into recorded, counted, logged gaps and asks
the devices to resend them over their ``cmd`` topic."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from hub.delivery.ranges import chunks, due_reports, due_requests
from hub.delivery.settings import DeliverySettings
from hub.store.ports import SequenceStore
from shared.messages import Command

if TYPE_CHECKING:
    from hub.app.metrics import HubMetrics

log = logging.getLogger(__name__)


class GapMonitor:
    """`run(now)` once per `check_interval_s` (a `Periodic` job); `send(device, command)` publishes a command."""

    def __init__(self, store: SequenceStore, send: Callable[[str, Command], bool], settings: DeliverySettings,
                 metrics: HubMetrics | None = None) -> None:
        self.store = store
        self.send = send
        self.settings = settings
        self.metrics = metrics
        self.reported = 0
        self.requested = 0

    def run(self, now: float) -> int:
        """One pass; returns how many gaps were newly reported."""
        s = self.settings
        holes = self.store.sequence_holes(limit=10_000)
        fresh = due_reports(holes, now=now, grace_s=s.gap_grace_s)
        if fresh:
            self.store.report_holes(fresh, ts=now)
            for h in fresh:
                log.warning("sequence gap: %s is missing %d message(s), seq %d..%d; asking it to resend", h.device_id,
                            h.missing, h.lo, h.hi)
            self.reported += len(fresh)
            if self.metrics is not None:
                self.metrics.sequence_gaps.inc(len(fresh))
                self.metrics.sequence_missing.inc(sum(h.missing for h in fresh))
            holes = self.store.sequence_holes(limit=10_000)
        by_device: dict[str, list[tuple[int, int, int]]] = {}
        for h in due_requests(holes, now=now, retry_s=s.resend_retry_s, max_requests=s.max_resend_requests):
            by_device.setdefault(h.device_id, []).append((h.id, h.lo, h.hi))
        for device_id, items in by_device.items():
            for part in chunks([(lo, hi) for _, lo, hi in items]):
                if not self.send(device_id, Command(ts=time.time(), cmd="resend", seq_ranges=part)):
                    break  # the publisher is not connected: the next pass asks again
                self.requested += 1
                if self.metrics is not None:
                    self.metrics.resend_requests.inc()
            else:
                self.store.mark_holes_requested([i for i, _, _ in items], ts=now)
        if self.metrics is not None:
            self.metrics.sequence_holes_open.set(len(holes))
        return len(fresh)
