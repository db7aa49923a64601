"""Store-and-forward: outbox rows leave over MQTT QoS 1 by priority and are deleted when the HUB acks them.

Each row gets a per-device sequence number when it first leaves (`AgentDB.stamp_sequences`). The broker's
PUBACK only marks it delivered: a broker that dies before saving, or a subscriber that drops it, would lose
it. The row goes only when the hub says it committed that seq (a ``cmd`` of kind ``ack``); the hub asks for
the seqs it misses (``resend``), and a delivered row the hub never acknowledged is sent again after
`hub_ack_timeout_s`, doubling up to `hub_ack_max_s`. Rows not PUBACKed in time, or that cannot be handed to the
client, are retried with exponential backoff. Receivers dedupe by msg_id, so a resend is stored once.
"""

from __future__ import annotations

import contextlib
import logging
import queue
from dataclasses import dataclass
from typing import Protocol, cast

import paho.mqtt.client as mqtt

from agent.db import WIRE_FORMAT_KEY, AgentDB
from agent.settings import AgentSettings
from shared.codec import WireFormat, transcode
from shared.errors import DecodeError

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """What the forwarder needs from an MQTT link."""

    acked: queue.SimpleQueue[int]
    connected_since: float

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                fmt: WireFormat = "json") -> mqtt.MQTTMessageInfo: ...

    def wire_format(self) -> WireFormat: ...

    def is_connected(self) -> bool: ...


@dataclass
class ForwarderStats:
    sent: int = 0
    acked: int = 0
    retried: int = 0
    dropped: int = 0
    hub_acked: int = 0
    resend_requests: int = 0
    resend_missing: int = 0  # seqs the hub asked for that are no longer here (dropped at the outbox bound)


class Forwarder:
    def __init__(
        self,
        db: AgentDB,
        link: Publisher,
        *,
        window: int = 100,
        ack_timeout_s: float = 30.0,
        retry_min_s: float = 1.0,
        retry_max_s: float = 60.0,
        max_rows: int = 200_000,
        hub_ack_timeout_s: float = 120.0,
        hub_ack_max_s: float = 3600.0,
    ) -> None:
        self.db = db
        self.link = link
        self.window = window
        self.ack_timeout_s = ack_timeout_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.max_rows = max_rows
        self.hub_ack_timeout_s = hub_ack_timeout_s
        self.hub_ack_max_s = hub_ack_max_s
        # mid -> (row id, sent at, seq): a row id alone is not enough, SQLite reuses the id of a deleted last row
        # (the hub's ack may delete a row before its PUBACK is collected, and a new row takes its id)
        self._inflight: dict[int, tuple[int, float, int | None]] = {}
        self.stats = ForwarderStats()
        self.wire_format: WireFormat | None = None  # the format the latest row went in

    @classmethod
    def from_settings(cls, db: AgentDB, link: Publisher, settings: AgentSettings) -> Forwarder:
        """The forwarder an agent with these settings runs: window, timeouts, backoff and bound from settings."""
        return cls(db, link, window=settings.publish_window, ack_timeout_s=settings.ack_timeout_s,
                   retry_min_s=settings.retry_min_s, retry_max_s=settings.retry_max_s,
                   max_rows=settings.outbox_max_rows, hub_ack_timeout_s=settings.hub_ack_timeout_s,
                   hub_ack_max_s=settings.hub_ack_max_s)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def pump(self, now: float) -> None:
        """Delete acknowledged rows, retry stale ones and send what is due, up to the window."""
        self._collect_acks(now)
        self._expire(now)
        if not self.link.is_connected():
            return
        free = self.window - len(self._inflight)
        if free <= 0:
            return
        in_flight_rows = {row for row, _, _ in self._inflight.values()}
        fmt = self._format()
        for row in self.db.stamp_sequences(self.db.due_outbox(now, free, exclude=in_flight_rows)):
            payload, sent_as = row.payload, cast(WireFormat, "json")
            if fmt != "json" and not row.retain:  # a retained message is read by anyone, later: JSON
                # a row that is not JSON (damaged) goes as it is, for the hub to dead-letter
                with contextlib.suppress(DecodeError):
                    payload, sent_as = transcode(row.payload, fmt), fmt
            info = self.link.publish(row.topic, payload, qos=1, retain=row.retain, fmt=sent_as)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self._backoff(row.id, row.attempts, now)
                break
            self._inflight[info.mid] = (row.id, now, row.seq)
            self.stats.sent += 1

    def _format(self) -> WireFormat:
        """The link's wire format, logged and kept in the agent's state (``fleetloop agent status``) when it
        changes."""
        fmt = self.link.wire_format()
        if fmt != self.wire_format:
            log.info("outbox messages go to the hub as %s%s", fmt,
                     " (the hub decodes it)" if fmt == "msgpack" else "")
            self.db.set_state({WIRE_FORMAT_KEY: fmt})
            self.wire_format = fmt
        return fmt

    def trim(self) -> None:
        """Keep the outbox bounded; the lowest-priority, oldest rows go first."""
        dropped = self.db.trim_outbox(self.max_rows)
        if dropped:
            self.stats.dropped += dropped
            log.warning("outbox over %d rows: dropped %d low-priority messages", self.max_rows, dropped)

    def hub_acked(self, ranges: list[tuple[int, int]]) -> int:
        """The hub committed these seqs: their rows leave the outbox."""
        gone = self.db.delete_sequences(ranges)
        self.stats.hub_acked += gone
        return gone

    def resend(self, ranges: list[tuple[int, int]], now: float) -> int:
        """The hub misses these seqs: send their rows again now (those still here)."""
        wanted = sum(hi - lo + 1 for lo, hi in ranges)
        found = self.db.resend_sequences(ranges, now)
        self.stats.resend_requests += 1
        if found < wanted:
            self.stats.resend_missing += wanted - found
            log.warning("the hub asked for %d message(s) by seq; %d are no longer in the outbox (dropped at its "
                        "bound)", wanted, wanted - found)
        else:
            log.info("the hub asked for %d message(s) by seq; resending", wanted)
        return found

    def _collect_acks(self, now: float) -> None:
        done: list[tuple[int, int | None]] = []
        while True:
            try:
                mid = self.link.acked.get_nowait()
            except queue.Empty:
                break
            entry = self._inflight.pop(mid, None)
            if entry is not None:
                done.append((entry[0], entry[2]))
        if done:  # delivered to the broker; the row stays until the hub acknowledges it
            self.db.mark_delivered(done, now, self.hub_ack_timeout_s, self.hub_ack_max_s)
            self.stats.acked += len(done)

    def _expire(self, now: float) -> None:
        """Rows unacknowledged for ack_timeout of *connected* time are sent again."""
        since = self.link.connected_since
        stale = [mid for mid, (_, sent, _) in self._inflight.items() if now - max(sent, since) > self.ack_timeout_s]
        for mid in stale:
            row_id, _, _ = self._inflight.pop(mid)
            self._backoff(row_id, 0, now)
            self.stats.retried += 1

    def _backoff(self, row_id: int, attempts: int, now: float) -> None:
        delay = min(self.retry_max_s, self.retry_min_s * (2 ** min(attempts, 16)))
        self.db.mark_attempt(row_id, now + delay)
