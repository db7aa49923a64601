"""The ingest worker: device messages from MQTT into the hub store, validated, batched and idempotent.

`IngestWorker` puts together an `IngestSession` (`hub.mqtt.session`: the paho client, MQTT 5 shared and snapshot
subscriptions, persistent session, manual acks) and a `BatchWriter` (`hub.mqtt.batch`: the writer thread that
commits batches to `HubStore.ingest_batch` and acknowledges them after commit), and counts what they do.
Each device's messages pass a token bucket first (`hub.mqtt.ratelimit`): a flooding device's excess is
acknowledged, dropped and counted per device, so it can neither fill the store nor starve the other devices.

Threads: paho's network thread only decodes and enqueues (it cannot raise); the writer thread drains the queue.
A worker killed at any point loses nothing: the broker redelivers what was not acknowledged when the worker
comes back with the same `client_id`, and the store ignores what it already holds. The trade-off: mosquitto
keeps routing this worker's share of a shared subscription to its session while it is down, and drops that
share if the worker stays away longer than `session_expiry_s`. `stop()` acknowledges everything, then ends the
session so the remaining workers take the whole load.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt

from hub.delivery.ranges import chunks, to_ranges
from hub.mqtt.batch import BatchWriter, Committed, Item, decode_delivery, internal_error
from hub.mqtt.decoding import MAX_SKEW_S, Decoded, dead_letter
from hub.mqtt.ratelimit import DeviceRateLimiter, rate_lane
from hub.mqtt.session import Delivery, IngestSession
from hub.store.ports import HubStore
from shared.codec import CONTENT_TYPES, MAX_PAYLOAD_BYTES, encode
from shared.errors import TopicError
from shared.messages import Command
from shared.topics import Kind, Topics

if TYPE_CHECKING:
    from hub.app.metrics import HubMetrics
    from hub.app.settings import HubSettings

log = logging.getLogger(__name__)

LAG_WINDOW = 20_000  # live records whose lag `lag_quantiles` looks at


@dataclass(frozen=True)
class IngestStats:
    """A snapshot of the worker's counters."""

    received: dict[str, int] = field(default_factory=dict)  # by topic kind (``unknown`` if not ours)
    stored: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)  # by reason
    skipped: int = 0  # acknowledged, not stored: statuses seen again (see `hub.mqtt.session`), rate-limited drops
    rate_limited: dict[str, int] = field(default_factory=dict)  # by device: over its rate, dropped (see ratelimit)
    processed: int = 0  # messages whose outcome (stored, duplicate, dead letter) has committed; not `skipped`
    acked: int = 0
    batches: int = 0
    store_errors: int = 0
    pending: int = 0  # received, not yet committed
    last_lag_s: float | None = None
    max_lag_s: float | None = None

    @property
    def total_received(self) -> int:
        return sum(self.received.values())

    @property
    def total_stored(self) -> int:
        return sum(self.stored.values())

    @property
    def total_dead_letters(self) -> int:
        return sum(self.dead_letters.values())


class IngestWorker:
    """Consumes device → hub topics into a `HubStore`. `start()`, then `stop()`; thread-safe counters."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        password: str | None,
        store: HubStore,
        prefix: str = "fleetloop",
        share_group: str | None = "hub",
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        client_id: str | None = None,
        session_expiry_s: int = 3600,
        keepalive: int = 30,
        tls_ca: str | None = None,
        metrics: HubMetrics | None = None,
        clock: Callable[[], float] = time.time,
        rate_per_device_s: float = 0.0,
        burst_per_device: int = 1000,
        max_skew_s: float = MAX_SKEW_S,
        acks: bool = True,
    ) -> None:
        if batch_size < 1 or flush_interval_s <= 0:
            raise ValueError("batch_size must be ≥ 1 and flush_interval_s > 0")
        self.topics = Topics(prefix)
        self.store = store
        self.share_group = share_group
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_payload_bytes = max_payload_bytes
        self.metrics = metrics
        self.clock = clock
        self.max_skew_s = max_skew_s
        self.limiter = DeviceRateLimiter(rate_per_s=rate_per_device_s, burst=burst_per_device)  # network thread only
        self.host, self.port, self.keepalive = host, port, keepalive
        self.session_expiry_s = session_expiry_s
        self.acks = acks
        # The group name is a secret (see HubSettings.ingest_share_group): the client id, which the broker logs,
        # names only a digest of it.
        group_tag = hashlib.sha256(share_group.encode()).hexdigest()[:8] if share_group else "solo"
        self.client_id = client_id or f"fleetloop-ingest-{group_tag}-{socket.gethostname()}"[:128]
        self.acks_sent = 0
        self.device_formats: dict[str, str] = {}  # device id → content type of its latest stored message

        self._cond = threading.Condition()  # guards the counters below and signals progress
        self._received: Counter[str] = Counter()
        self._stored: Counter[str] = Counter()
        self._duplicates: Counter[str] = Counter()
        self._dead: Counter[str] = Counter()
        self._rate_limited: Counter[str] = Counter()
        self._skipped = self._processed = self._acked = self._batches = self._store_errors = 0
        self._pending = 0
        self._last_received = 0.0
        self._last_lag: float | None = None
        self._max_lag: float | None = None
        self._lags: deque[float] = deque(maxlen=LAG_WINDOW)  # the latest publish → commit lags, for quantiles
        self._started = False
        self._stopping = threading.Event()  # shared with the session and the writer

        self.session = IngestSession(
            host=host, port=port, username=username, password=password, client_id=self.client_id,
            topics=self.topics, share_group=share_group, deliver=self._receive, stopping=self._stopping,
            session_expiry_s=session_expiry_s, keepalive=keepalive, tls_ca=tls_ca,
        )
        self.writer = BatchWriter(
            store, ack=self.session.ack, on_commit=self._committed, on_store_error=self._store_error,
            stopping=self._stopping, batch_size=batch_size, flush_interval_s=flush_interval_s, metrics=metrics,
            clock=clock, name=f"ingest-writer-{self.client_id}",
        )

    @property
    def client(self) -> mqtt.Client:
        """The session's paho client."""
        return self.session.client

    @property
    def connected(self) -> threading.Event:
        """Set while the session is connected."""
        return self.session.connected

    @property
    def subscribed(self) -> threading.Event:
        """Set once the broker acknowledged every subscription of the current connection."""
        return self.session.subscribed

    @classmethod
    def from_settings(
        cls, settings: HubSettings, store: HubStore, *, metrics: HubMetrics | None = None
    ) -> IngestWorker:
        return cls(
            host=settings.mqtt_host,
            port=settings.mqtt_port,
            username=settings.mqtt_username,
            password=settings.password,
            store=store,
            prefix=settings.prefix,
            share_group=settings.ingest_share_group,
            batch_size=settings.ingest_batch_size,
            flush_interval_s=settings.ingest_flush_interval_s,
            max_payload_bytes=settings.max_payload_bytes,
            client_id=settings.ingest_client_id,
            session_expiry_s=settings.ingest_session_expiry_s,
            keepalive=settings.mqtt_keepalive,
            tls_ca=str(settings.mqtt_tls_ca) if settings.mqtt_tls_ca else None,
            metrics=metrics,
            rate_per_device_s=settings.ingest_rate_per_device_s,
            burst_per_device=settings.ingest_burst_per_device,
            max_skew_s=settings.max_clock_skew_s,
            acks=settings.delivery.acks,
        )

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer and connect in the background (paho reconnects on its own)."""
        if self._started:
            raise RuntimeError("the ingest worker is already started")
        self._started = True
        self.writer.start()
        self.session.connect()

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Wait until connected and every subscription is acknowledged."""
        return self.subscribed.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking new messages, commit and acknowledge what arrived, end the session, disconnect.

        The session ends only if nothing arrived for ``2 * flush_interval_s`` and all of it committed.
        Otherwise (a backlog still arriving, the store down) the session is kept, and the broker
        redelivers what is unacknowledged to a worker restarted with the same client id.
        """
        deadline = time.monotonic() + timeout
        drained = False
        if self.connected.is_set():
            self.session.unsubscribe()
            # Messages already routed to this session keep arriving after the UNSUBSCRIBE: take them all.
            drained = self.wait_idle(quiet_s=max(0.1, 2 * self.flush_interval_s),
                                     timeout=max(0.0, deadline - time.monotonic()))
        self._stopping.set()
        if self._started:
            self.writer.join(max(0.1, deadline - time.monotonic()))
            if self.writer.is_alive():
                log.error("ingest writer did not finish within %.1f s; unacknowledged messages stay with the "
                          "broker", timeout)
        with self._cond:
            clean = drained and self._pending == 0
        self.session.close(end_session=clean)  # everything acknowledged: let the other workers take over

    # -- progress (for tests and health checks) --------------------------------------------------
    def stats(self) -> IngestStats:
        with self._cond:
            return IngestStats(
                received=dict(self._received),
                stored=dict(self._stored),
                duplicates=dict(self._duplicates),
                dead_letters=dict(self._dead),
                skipped=self._skipped,
                rate_limited=dict(self._rate_limited),
                processed=self._processed,
                acked=self._acked,
                batches=self._batches,
                store_errors=self._store_errors,
                pending=self._pending,
                last_lag_s=self._last_lag,
                max_lag_s=self._max_lag,
            )

    def lag_quantiles(self, *qs: float) -> list[float | None]:
        """Quantiles (0-1) of the publish → commit lag (s; the message's ``ts`` to its commit) over the latest
        `LAG_WINDOW` live records; None before any."""
        with self._cond:
            lags = sorted(self._lags)
        if not lags:
            return [None for _ in qs]
        return [lags[min(len(lags) - 1, int(q * len(lags)))] for q in qs]

    def wait_for(self, predicate: Callable[[IngestStats], bool], timeout: float = 10.0) -> bool:
        """Wait until `predicate(self.stats())` holds; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.stats()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
            return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything received so far has committed."""
        return self.wait_for(lambda s: s.pending == 0, timeout)

    def wait_idle(self, quiet_s: float = 0.2, timeout: float = 10.0) -> bool:
        """Wait until everything received has committed and nothing arrived for `quiet_s`."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                idle_for = time.monotonic() - self._last_received
                if self._pending == 0 and idle_for >= quiet_s:
                    return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(remaining, max(0.01, quiet_s - idle_for), 0.05))

    # -- the two threads report here -----------------------------------------------------------
    def _receive(self, delivery: Delivery) -> None:
        """Decode and enqueue (paho's network thread); never raises: a bug in decoding is an ``internal``
        dead letter."""
        received_at = self.clock()
        try:
            limited = self._rate_limit(delivery, received_at)
            item = limited if limited is not None else decode_delivery(
                self.topics, delivery, received_at=received_at, max_bytes=self.max_payload_bytes,
                max_skew_s=self.max_skew_s)
        except Exception as exc:  # a bug in decoding must not stop the worker or lose the message's ack
            log.exception("ingest: unexpected error decoding a message")
            try:
                item = internal_error(delivery, received_at, repr(exc))
            except Exception:  # pragma: no cover - nothing left to record; acknowledge and move on
                item = Item(delivery.mid, delivery.qos, delivery.generation, None)
        if item.decoded is not None and item.decoded.record is not None:
            self._note_format(item.decoded.record.message.device_id, delivery.content_type)
        with self._cond:
            self._pending += 1
            if item.decoded is not None:
                self._received[item.decoded.kind] += 1
            self._last_received = time.monotonic()
        self.writer.put(item)

    def _note_format(self, device_id: str, content_type: str | None) -> None:
        """Log the wire format each device's messages come in, when it is first seen and when it changes."""
        fmt = content_type or CONTENT_TYPES["json"]
        if self.device_formats.get(device_id) != fmt:
            log.info("ingest: %s sends %s", device_id, fmt)
            self.device_formats[device_id] = fmt

    def _rate_limit(self, d: Delivery, received_at: float) -> Item | None:
        """None if the message may pass; else what it becomes: the first refusal of an episode a ``rate_limited``
        dead letter, the rest acknowledged and dropped (counted per device)."""
        if d.skip or d.error is not None or not self.limiter.enabled:
            return None
        try:
            parsed = self.topics.parse(d.topic)
        except TopicError:
            return None  # not a device topic: decoding dead-letters it
        device = parsed.device_id
        verdict = self.limiter.allow(f"{device}/{rate_lane(parsed.kind)}", received_at)
        if verdict.allowed:
            return None
        with self._cond:
            self._rate_limited[device] += 1
        if self.metrics is not None:
            self.metrics.rate_limited.labels(device=device).inc()
        if not verdict.first:
            return Item(d.mid, d.qos, d.generation, None)
        log.warning("ingest: %s exceeds %.0f messages/s (burst %d): dropping its excess messages until it slows down",
                    device, self.limiter.rate_per_s, self.limiter.burst)
        detail = (f"{device} exceeded {self.limiter.rate_per_s:g} messages/s (burst {self.limiter.burst}); this and "
                  "the following excess messages are dropped and counted (fleetloop_hub_rate_limited_messages)")
        letter = dead_letter(d.topic, d.payload, "rate_limited", detail, received_at, device)
        return Item(d.mid, d.qos, d.generation, Decoded(parsed.kind.name.lower(), dead_letter=letter), d.topic)

    def _committed(self, c: Committed) -> None:
        with self._cond:
            self._stored.update(c.result.stored)
            self._duplicates.update(c.result.duplicates)
            self._dead.update(d.reason for d in c.letters)
            self._skipped += c.skipped
            self._processed += c.size - c.skipped
            self._acked += c.acked
            self._pending -= c.size
            self._batches += 1
            if c.lags:
                self._last_lag = c.lags[-1]
                self._max_lag = max(c.lags) if self._max_lag is None else max(self._max_lag, *c.lags)
                self._lags.extend(c.lags)
            self._cond.notify_all()
        if self.acks and c.sequences:
            self._send_acks(c.sequences)

    def _send_acks(self, sequences: dict[str, list[int]]) -> None:
        """Tell each device which of its seqs are committed, so it can drop them from its outbox (after commit)."""
        now = self.clock()
        for device_id, seqs in sequences.items():
            for part in chunks(to_ranges(seqs)):
                payload = encode(Command(ts=now, cmd="ack", seq_ranges=part))
                if not self.session.publish(self.topics.topic(device_id, Kind.CMD), payload):
                    return  # not connected: the device resends after its timeout, and the hub acks it then
                self.acks_sent += 1
                if self.metrics is not None:
                    self.metrics.hub_acks.inc()

    def _store_error(self) -> None:
        with self._cond:
            self._store_errors += 1
