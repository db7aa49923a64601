"""The ingest worker: device messages from MQTT into the hub store, validated, batched and idempotent.

Threads: paho's network thread only decodes and enqueues (`_on_message` cannot raise); one writer
thread drains the queue into `HubStore.ingest_batch` transactions, closing a batch at `batch_size`
messages, when the queue runs dry, or `flush_interval_s` after its first message.

Acknowledgement: paho runs with ``manual_ack``; the writer sends each PUBACK only after the message's
batch (or its dead letter) has committed, in the order the messages arrived. With a stable
`client_id` and a persistent session (``clean_start=False``, `session_expiry_s`), a worker killed
at any point loses nothing: the broker redelivers what was not acknowledged when the worker comes
back with the same id, and the store ignores what it already holds. The trade-off: mosquitto keeps
routing this worker's share of a shared subscription to its session while it is down, and drops
that share if the worker stays away longer than `session_expiry_s`. `stop()` acknowledges
everything, then ends the session so the remaining workers take the whole load.

Several workers with the same `share_group` split the traffic (MQTT 5 shared subscriptions). Shared
subscriptions get no retained messages (MQTT 5; mosquitto 2.0 sends them anyway), so each worker also
subscribes to the status topics directly (subscription identifier `SNAPSHOT_SUB_ID`) and keeps only
the *retained* statuses from it: the presence snapshot at startup. Live statuses are taken from the
shared subscription; the other copy of each is acknowledged and skipped.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hub.mqtt.decoding import UNKNOWN, Decoded, dead_letter, decode_message
from hub.store.ports import HubStore
from hub.store.rows import DeadLetter, IngestRecord, IngestResult
from infra.mqtt import build_client, close_client
from shared.codec import MAX_PAYLOAD_BYTES
from shared.errors import StoreError, TopicError
from shared.topics import Kind, Topics

if TYPE_CHECKING:
    from hub.app.metrics import HubMetrics
    from hub.app.settings import HubSettings

log = logging.getLogger(__name__)

SHARED_SUB_ID = 1
SNAPSHOT_SUB_ID = 2
_RETRY_MAX_S = 5.0


@dataclass(frozen=True, slots=True)
class _Item:
    """One received message on its way to the store, with what is needed to acknowledge it."""

    mid: int
    qos: int
    generation: int  # connection it arrived on: a PUBACK is only valid on that connection
    decoded: Decoded | None  # None: a live copy from the snapshot subscription, acknowledged and skipped
    topic: str = ""
    payload_head: bytes = b""  # for dead-lettering a record the store rejects
    payload_size: int = 0
    retained: bool = False


@dataclass(frozen=True)
class IngestStats:
    """A snapshot of the worker's counters."""

    received: dict[str, int] = field(default_factory=dict)  # by topic kind (``unknown`` if not ours)
    stored: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)  # by reason
    skipped: int = 0  # statuses seen again through the other subscription (see `_duplicate_copy`)
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
        self.host, self.port, self.keepalive = host, port, keepalive
        self.session_expiry_s = session_expiry_s
        self.client_id = client_id or f"fleetloop-ingest-{share_group or 'solo'}-{socket.gethostname()}"[:128]

        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._cond = threading.Condition()  # guards the counters below and signals progress
        self._received: Counter[str] = Counter()
        self._stored: Counter[str] = Counter()
        self._duplicates: Counter[str] = Counter()
        self._dead: Counter[str] = Counter()
        self._skipped = self._processed = self._acked = self._batches = self._store_errors = 0
        self._pending = 0
        self._last_received = 0.0
        self._last_lag: float | None = None
        self._max_lag: float | None = None

        self._ack_lock = threading.Lock()  # generation changes and PUBACKs never interleave
        self._generation = 0
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._suback_mids: set[int] = set()
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None

        client = build_client(self.client_id, username=username, password=password, tls_ca=tls_ca, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self.client = client

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
            share_group=settings.share_group,
            batch_size=settings.ingest_batch_size,
            flush_interval_s=settings.ingest_flush_interval_s,
            max_payload_bytes=settings.max_payload_bytes,
            client_id=settings.ingest_client_id,
            session_expiry_s=settings.ingest_session_expiry_s,
            keepalive=settings.mqtt_keepalive,
            tls_ca=str(settings.mqtt_tls_ca) if settings.mqtt_tls_ca else None,
            metrics=metrics,
        )

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer and connect in the background (paho reconnects on its own)."""
        if self._writer is not None:
            raise RuntimeError("the ingest worker is already started")
        self._writer = threading.Thread(target=self._run_writer, name=f"ingest-writer-{self.client_id}", daemon=True)
        self._writer.start()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive, clean_start=False,
                                  properties=props)
        self.client.loop_start()

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
            self.client.unsubscribe(self._filters())
            # Messages already routed to this session keep arriving after the UNSUBSCRIBE: take them all.
            drained = self.wait_idle(quiet_s=max(0.1, 2 * self.flush_interval_s),
                                     timeout=max(0.0, deadline - time.monotonic()))
        self._stopping.set()
        if self._writer is not None:
            self._writer.join(max(0.1, deadline - time.monotonic()))
            if self._writer.is_alive():
                log.error("ingest writer did not finish within %.1f s; unacknowledged messages stay with the "
                          "broker", timeout)
        with self._cond:
            clean = drained and self._pending == 0
        props = None
        if clean:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0  # everything is acknowledged: let the other workers take over
        close_client(self.client, props)
        self.connected.clear()

    # -- progress (for tests and health checks) --------------------------------------------------
    def stats(self) -> IngestStats:
        with self._cond:
            return IngestStats(
                received=dict(self._received),
                stored=dict(self._stored),
                duplicates=dict(self._duplicates),
                dead_letters=dict(self._dead),
                skipped=self._skipped,
                processed=self._processed,
                acked=self._acked,
                batches=self._batches,
                store_errors=self._store_errors,
                pending=self._pending,
                last_lag_s=self._last_lag,
                max_lag_s=self._max_lag,
            )

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

    # -- paho callbacks (network thread) ---------------------------------------------------------
    def _filters(self) -> list[str]:
        filters = self.topics.hub_subscriptions(self.share_group)
        if self.share_group:
            filters.append(self.topics.all_devices(Kind.STATUS))
        return filters

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("broker %s:%d refused ingest worker %s: %s", self.host, self.port, self.client_id, reason)
            return
        with self._ack_lock:
            self._generation += 1
        self.connected.set()
        log.info("ingest worker %s connected to %s:%d (session present: %s)", self.client_id, self.host, self.port,
                 flags.session_present)
        shared = Properties(PacketTypes.SUBSCRIBE)
        shared.SubscriptionIdentifier = SHARED_SUB_ID
        mids = [client.subscribe([(f, 1) for f in self.topics.hub_subscriptions(self.share_group)],
                                 properties=shared)[1]]
        if self.share_group:
            snapshot = Properties(PacketTypes.SUBSCRIBE)
            snapshot.SubscriptionIdentifier = SNAPSHOT_SUB_ID
            mids.append(client.subscribe(self.topics.all_devices(Kind.STATUS), qos=1, properties=snapshot)[1])
        with self._cond:
            self._suback_mids = {m for m in mids if m is not None}

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[Any], props: Any) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("broker refused ingest subscriptions (mid %d): %s", mid, ", ".join(failed))
        with self._cond:
            self._suback_mids.discard(mid)
            if not self._suback_mids and not failed:
                self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        with self._ack_lock:
            self._generation += 1  # PUBACKs for messages of the lost connection must not go out on the next
        self.connected.clear()
        self.subscribed.clear()
        if not self._stopping.is_set():
            log.warning("ingest worker %s disconnected: %s; unacknowledged messages will be redelivered",
                        self.client_id, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """Decode and enqueue; never raises (a bad payload is a dead letter, a bug is logged and kept)."""
        received_at = self.clock()
        try:
            item = self._decode(message, received_at)
        except Exception as exc:  # a bug in decoding must not stop the worker or lose the message's ack
            log.exception("ingest: unexpected error decoding a message")
            item = self._internal_error(message, received_at, exc)
        with self._cond:
            self._pending += 1
            if item.decoded is not None:
                self._received[item.decoded.kind] += 1
            self._last_received = time.monotonic()
        self._queue.put(item)

    def _decode(self, message: mqtt.MQTTMessage, received_at: float) -> _Item:
        with self._ack_lock:
            generation = self._generation
        payload = bytes(message.payload)
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", "replace")  # the broker should have refused it
        if self._duplicate_copy(topic, bool(message.retain), _subscription_ids(message)):
            return _Item(message.mid, message.qos, generation, None)
        decoded = decode_message(self.topics, topic, payload, retained=bool(message.retain), received_at=received_at,
                                 max_bytes=self.max_payload_bytes)
        head = payload[:4096] if decoded.record is not None else b""
        return _Item(message.mid, message.qos, generation, decoded, topic, head, len(payload), bool(message.retain))

    def _duplicate_copy(self, topic: str, retained: bool, sub_ids: set[int]) -> bool:
        """A status that also arrives through the other subscription, where it is ingested.

        Live statuses are taken from the shared subscription, retained ones from the snapshot one
        (mosquitto 2.0 also sends retained messages to shared subscriptions, against MQTT 5 §4.8.2).
        """
        if not self.share_group:
            return False
        if SNAPSHOT_SUB_ID in sub_ids and SHARED_SUB_ID not in sub_ids:
            return not retained
        if retained and SNAPSHOT_SUB_ID not in sub_ids:
            try:
                return self.topics.parse(topic).kind is Kind.STATUS
            except TopicError:
                return False
        return False

    def _internal_error(self, message: mqtt.MQTTMessage, received_at: float, exc: Exception) -> _Item:
        with self._ack_lock:
            generation = self._generation
        mid, qos = getattr(message, "mid", 0), getattr(message, "qos", 0)
        try:
            topic = message._topic.decode("utf-8", "replace")
            letter = dead_letter(topic, bytes(message.payload), "internal", repr(exc)[:500], received_at)
            return _Item(mid, qos, generation, Decoded(UNKNOWN, dead_letter=letter), topic)
        except Exception:  # pragma: no cover - nothing left to record; acknowledge and move on
            return _Item(mid, qos, generation, None)

    # -- writer thread ---------------------------------------------------------------------------
    def _run_writer(self) -> None:
        while True:
            batch = self._take()
            if batch:
                try:
                    self._commit(batch)
                except Exception:  # a bug: keep the writer alive; the batch stays unacknowledged
                    log.exception("ingest writer: unexpected error; %d messages left unacknowledged", len(batch))
            elif self._stopping.is_set():
                return

    def _take(self) -> list[_Item]:
        """Up to `batch_size` items: closes when the queue runs dry or `flush_interval_s` after the first."""
        try:
            first = self._queue.get(timeout=self.flush_interval_s)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.flush_interval_s
        while len(batch) < self.batch_size and time.monotonic() < deadline:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break  # the broker sends at most its in-flight window before our PUBACKs: do not wait
        return batch

    def _commit(self, batch: list[_Item]) -> None:
        record_items = [i for i in batch if i.decoded is not None and i.decoded.record is not None]
        records = [i.decoded.record for i in record_items if i.decoded is not None and i.decoded.record is not None]
        letters = [i.decoded.dead_letter for i in batch if i.decoded is not None and i.decoded.dead_letter is not None]
        result = self._write(records, letters)
        if result is None:
            return  # stopping with the store down: leave these unacknowledged for redelivery
        rejected: list[DeadLetter] = []
        for r in result.rejected:
            item = record_items[r.index]
            device = records[r.index].message.device_id
            rejected.append(DeadLetter(item.topic, item.payload_head, r.reason, r.detail,
                                       records[r.index].received_at, item.payload_size, device))
        if rejected and self._write([], rejected) is None:
            return
        now = self.clock()
        rejected_idx = {r.index for r in result.rejected}
        lags = [now - rec.message.ts for i, (rec, item) in enumerate(zip(records, record_items, strict=True))
                if not item.retained and i not in rejected_idx]
        acked = self._ack(batch)
        with self._cond:
            self._stored.update(result.stored)
            self._duplicates.update(result.duplicates)
            self._dead.update(d.reason for d in [*letters, *rejected])
            skipped = sum(1 for i in batch if i.decoded is None)
            self._skipped += skipped
            self._processed += len(batch) - skipped
            self._acked += acked
            self._pending -= len(batch)
            self._batches += 1
            if lags:
                self._last_lag = lags[-1]
                self._max_lag = max(lags) if self._max_lag is None else max(self._max_lag, *lags)
            self._cond.notify_all()
        self._observe(result, [*letters, *rejected], lags)

    def _write(self, records: list[IngestRecord], letters: list[DeadLetter]) -> IngestResult | None:
        """`ingest_batch`, retried with backoff while the store fails; None if stopping meanwhile."""
        delay = 0.05
        while True:
            try:
                return self.store.ingest_batch(records, letters)
            except Exception as exc:  # StoreError, or a bug: either way keep the messages unacknowledged
                with self._cond:
                    self._store_errors += 1
                if self.metrics is not None:
                    self.metrics.store_errors.inc()
                if isinstance(exc, StoreError):
                    log.error("ingest: store failed (%s); retrying in %.2f s", exc, delay)
                else:
                    log.exception("ingest: unexpected error writing a batch; retrying in %.2f s", delay)
                if self._stopping.wait(delay):
                    return None
                delay = min(delay * 2, _RETRY_MAX_S)

    def _ack(self, batch: list[_Item]) -> int:
        """PUBACK every message of a committed batch, in arrival order, on the connection it came from."""
        sent = 0
        with self._ack_lock:
            for item in batch:
                if item.qos > 0 and item.generation == self._generation and self.connected.is_set():
                    self.client.ack(item.mid, item.qos)
                    sent += 1
        return sent

    def _observe(self, result: IngestResult, letters: list[DeadLetter], lags: list[float]) -> None:
        m = self.metrics
        if m is None:
            return
        for kind, n in result.stored.items():
            m.ingested.labels(kind=kind).inc(n)
        for kind, n in result.duplicates.items():
            m.duplicates.labels(kind=kind).inc(n)
        for letter in letters:
            m.dead_letters.labels(reason=letter.reason).inc()
        for lag in lags:
            m.ingest_lag.observe(max(0.0, lag))
        m.ingest_queue.set(self._queue.qsize())


def _subscription_ids(message: mqtt.MQTTMessage) -> set[int]:
    props = getattr(message, "properties", None)
    ids = getattr(props, "SubscriptionIdentifier", None) if props is not None else None
    if ids is None:
        return set()
    return set(ids) if isinstance(ids, list) else {int(ids)}
