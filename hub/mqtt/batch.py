"""The ingest worker's writer thread: decoded messages from a queue into the hub store in batches, acknowledged
after commit.

One writer thread drains the queue into `HubStore.ingest_batch` transactions, closing a batch at `batch_size`
messages, when no message came for `linger_s` after the queue ran dry, or `flush_interval_s` after its first
message. A record the store rejects
becomes a dead letter. Each message is acknowledged only after its batch (or its dead letter) has committed,
in the order the messages arrived; while the store fails, the batch is retried with backoff and stays
unacknowledged (so the broker redelivers it to a restarted worker).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hub.mqtt.decoding import MAX_SKEW_S, UNKNOWN, Decoded, dead_letter, decode_message
from hub.mqtt.session import Acknowledgeable, Delivery
from hub.store.ports import HubStore
from hub.store.rows import DeadLetter, IngestRecord, IngestResult
from shared.errors import StoreError
from shared.topics import Topics

if TYPE_CHECKING:
    from hub.app.metrics import HubMetrics

log = logging.getLogger(__name__)

RETRY_MAX_S = 5.0
LINGER_S = 0.002
"""How long the writer waits for one more message once its queue runs dry (Kafka's ``linger.ms``). Messages come
one by one from paho's thread; closing at the first empty queue committed ~6-13 messages per transaction under
load (bench/hub.py), and the transaction, not the message, was the writer's main cost. Short, because the broker
sends at most its in-flight window (mosquitto.conf: 100) before the batch's PUBACKs: a gap means it is waiting
for us."""
PAYLOAD_HEAD_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Item:
    """One received message on its way to the store, with what is needed to acknowledge it."""

    mid: int
    qos: int
    generation: int  # connection it arrived on: a PUBACK is only valid on that connection
    decoded: Decoded | None  # None: a message acknowledged and skipped (see `Delivery.skip`)
    topic: str = ""
    payload_head: bytes = b""  # for dead-lettering a record the store rejects
    payload_size: int = 0
    retained: bool = False


def decode_delivery(
    topics: Topics, d: Delivery, *, received_at: float, max_bytes: int, max_skew_s: float = MAX_SKEW_S
) -> Item:
    """What a delivered message becomes in the queue: a record, a dead letter, or (skipped) nothing."""
    if d.skip:
        return Item(d.mid, d.qos, d.generation, None)
    if d.error is not None:
        return internal_error(d, received_at, d.error)
    decoded = decode_message(topics, d.topic, d.payload, retained=d.retained, received_at=received_at,
                             max_bytes=max_bytes, max_skew_s=max_skew_s, content_type=d.content_type)
    head = d.payload[:PAYLOAD_HEAD_BYTES] if decoded.record is not None else b""
    return Item(d.mid, d.qos, d.generation, decoded, d.topic, head, len(d.payload), d.retained)


def internal_error(d: Delivery, received_at: float, detail: str) -> Item:
    """A message the hub failed on (a bug): kept as an ``internal`` dead letter for a look."""
    letter = dead_letter(d.topic, d.payload, "internal", detail[:500], received_at)
    return Item(d.mid, d.qos, d.generation, Decoded(UNKNOWN, dead_letter=letter), d.topic)


@dataclass(frozen=True)
class Committed:
    """What one committed batch did: the store's result, every dead letter written (decoding's and the store's
    rejections), how many messages it held, skipped and acknowledged, and the lags of its live records."""

    result: IngestResult
    letters: list[DeadLetter]
    size: int
    skipped: int
    acked: int
    lags: list[float]
    sequences: dict[str, list[int]] = field(default_factory=dict)  # device → seqs committed (stored or not new)


class BatchWriter:
    """The writer thread. `put` from any thread; `start`, then set `stopping` and `join`.

    `ack(batch)` acknowledges a committed batch (returns how many PUBACKs went out); `on_commit` and
    `on_store_error` report progress to the owner's counters.
    """

    def __init__(
        self,
        store: HubStore,
        *,
        ack: Callable[[Sequence[Acknowledgeable]], int],
        on_commit: Callable[[Committed], None],
        on_store_error: Callable[[], None],
        stopping: threading.Event,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        metrics: HubMetrics | None = None,
        clock: Callable[[], float] = time.time,
        name: str = "ingest-writer",
        linger_s: float = LINGER_S,
    ) -> None:
        self.store = store
        self.ack = ack
        self.on_commit = on_commit
        self.on_store_error = on_store_error
        self.stopping = stopping
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.linger_s = min(linger_s, flush_interval_s)
        self.metrics = metrics
        self.clock = clock
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def put(self, item: Item) -> None:
        self._queue.put(item)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch:
                try:
                    self._commit(batch)
                except Exception:  # a bug: keep the writer alive; the batch stays unacknowledged
                    log.exception("ingest writer: unexpected error; %d messages left unacknowledged", len(batch))
            elif self.stopping.is_set():
                return

    def _take(self) -> list[Item]:
        """Up to `batch_size` items: closes when nothing came for `linger_s` after the queue ran dry, or
        `flush_interval_s` after the first."""
        try:
            first = self._queue.get(timeout=self.flush_interval_s)
        except queue.Empty:
            return []
        batch = [first]
        get, linger = self._queue.get, self.linger_s
        deadline = time.monotonic() + self.flush_interval_s
        while len(batch) < self.batch_size:
            try:
                batch.append(get(block=False))
                continue
            except queue.Empty:
                pass
            wait = min(linger, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                batch.append(get(timeout=wait))
            except queue.Empty:
                break  # a gap: the broker may be holding its in-flight window until this batch is acknowledged
        return batch

    def _commit(self, batch: list[Item]) -> None:
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
        sequences: dict[str, list[int]] = {}
        for rec in records:
            if rec.message.seq is not None:
                sequences.setdefault(rec.message.device_id, []).append(rec.message.seq)
        for i in batch:  # a dead-lettered message was received and recorded: acknowledged too, never resent
            letter = i.decoded.dead_letter if i.decoded is not None else None
            if letter is not None and letter.device_id and i.decoded is not None and i.decoded.seq is not None:
                sequences.setdefault(letter.device_id, []).append(i.decoded.seq)
        self._track(sequences)
        acked = self.ack(batch)
        skipped = sum(1 for i in batch if i.decoded is None)
        self.on_commit(Committed(result, [*letters, *rejected], len(batch), skipped, acked, lags, sequences))
        self._observe(result, [*letters, *rejected], lags)

    def _track(self, sequences: dict[str, list[int]]) -> None:
        """Fold the batch's sequence numbers into the store's per-device tracking. A failure here is logged, not
        retried: the messages are committed, and a seq left untracked only shows up as a hole the device fills."""
        if not sequences:
            return
        try:
            update = self.store.track_sequences(sequences, now=self.clock())
        except Exception:
            log.exception("ingest: could not track the sequence numbers of a committed batch")
            return
        if update.gaps_closed:
            log.info("ingest: resends filled %d sequence gap(s)", update.gaps_closed)
            if self.metrics is not None:
                self.metrics.sequence_filled.inc(update.gaps_closed)

    def _write(self, records: list[IngestRecord], letters: list[DeadLetter]) -> IngestResult | None:
        """`ingest_batch`, retried with backoff while the store fails; None if stopping meanwhile."""
        delay = 0.05
        while True:
            try:
                return self.store.ingest_batch(records, letters)
            except Exception as exc:  # StoreError, or a bug: either way keep the messages unacknowledged
                self.on_store_error()
                if self.metrics is not None:
                    self.metrics.store_errors.inc()
                if isinstance(exc, StoreError):
                    log.error("ingest: store failed (%s); retrying in %.2f s", exc, delay)
                else:
                    log.exception("ingest: unexpected error writing a batch; retrying in %.2f s", delay)
                if self.stopping.wait(delay):
                    return None
                delay = min(delay * 2, RETRY_MAX_S)

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
