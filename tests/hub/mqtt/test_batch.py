"""The batch writer without a broker: deliveries decoded, batches committed then acknowledged, rejections and
store failures handled (`hub.mqtt.batch`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from hub.mqtt.batch import BatchWriter, Committed, decode_delivery
from hub.mqtt.session import Acknowledgeable, Delivery
from hub.store import DeadLetter, IngestRecord, IngestResult, Rejected
from shared.codec import encode
from shared.errors import StoreError
from shared.topics import Topics
from tests.hub.mqtt.test_ingest import anomaly

TOPICS = Topics("fleetloop")


def delivery(mid: int, payload: bytes, *, device: str = "dev-1", **kw: Any) -> Delivery:
    return Delivery(mid, 1, 1, kw.pop("topic", f"fleetloop/{device}/anomaly"), payload, **kw)


def test_a_delivery_becomes_a_record_a_dead_letter_or_nothing() -> None:
    now = time.time()  # the receive time: decoding refuses device timestamps far ahead of it
    good = decode_delivery(TOPICS, delivery(1, encode(anomaly("dev-1"))), received_at=now, max_bytes=10_000)
    assert good.decoded is not None and good.decoded.record is not None and good.payload_head
    bad = decode_delivery(TOPICS, delivery(2, b"{"), received_at=now, max_bytes=10_000)
    assert bad.decoded is not None and bad.decoded.dead_letter is not None
    assert bad.decoded.dead_letter.reason == "bad_json" and not bad.payload_head
    broken = decode_delivery(TOPICS, delivery(3, b"x", error="boom"), received_at=now, max_bytes=10_000)
    assert broken.decoded is not None and broken.decoded.dead_letter is not None
    assert (broken.decoded.dead_letter.reason, broken.decoded.dead_letter.detail) == ("internal", "boom")
    skipped = decode_delivery(TOPICS, delivery(4, b"x", skip=True), received_at=now, max_bytes=10_000)
    assert skipped.decoded is None and skipped.mid == 4


class Store:
    """Fails `failures` times, then stores everything but rejects the records at `reject`."""

    def __init__(self, failures: int = 0, reject: Sequence[int] = ()) -> None:
        self.failures, self.reject = failures, reject
        self.batches: list[tuple[list[IngestRecord], list[DeadLetter]]] = []

    def ingest_batch(self, records: list[IngestRecord], dead_letters: list[DeadLetter]) -> IngestResult:
        if self.failures:
            self.failures -= 1
            raise StoreError("database is locked")
        self.batches.append((list(records), list(dead_letters)))
        rejected = tuple(Rejected(i, "too_big", "a count beyond 64 bits") for i in self.reject if i < len(records))
        return IngestResult(stored={"anomaly": len(records) - len(rejected)} if records else {}, rejected=rejected)


def run(store: Store, deliveries: list[Delivery]) -> tuple[list[Committed], list[int], int]:
    """Every delivery through a writer; returns the commits, the mids acknowledged and the store errors."""
    commits: list[Committed] = []
    acked: list[int] = []
    errors = [0]
    done = threading.Event()

    def ack(batch: Sequence[Acknowledgeable]) -> int:
        acked.extend(m.mid for m in batch)
        return len(batch)

    def committed(c: Committed) -> None:
        commits.append(c)
        if sum(x.size for x in commits) == len(deliveries):
            done.set()

    def store_error() -> None:
        errors[0] += 1

    stopping = threading.Event()
    writer = BatchWriter(store, ack=ack, on_commit=committed, on_store_error=store_error,  # type: ignore[arg-type]
                         stopping=stopping, flush_interval_s=0.05)
    for d in deliveries:
        writer.put(decode_delivery(TOPICS, d, received_at=time.time(), max_bytes=10_000))
    writer.start()
    assert done.wait(10)
    stopping.set()
    writer.join(5)
    assert not writer.is_alive()
    return commits, acked, errors[0]


def test_a_batch_is_acknowledged_in_order_after_commit_and_rejections_become_dead_letters() -> None:
    store = Store(failures=2, reject=[1])
    deliveries = [delivery(1, encode(anomaly("dev-1"))), delivery(2, encode(anomaly("dev-1"))),
                  delivery(3, b"{"), delivery(4, b"", skip=True)]
    commits, acked, errors = run(store, deliveries)
    assert errors == 2 and acked == [1, 2, 3, 4]
    assert len(commits) == 1 and (commits[0].size, commits[0].skipped, commits[0].acked) == (4, 1, 4)
    assert sorted(d.reason for d in commits[0].letters) == ["bad_json", "too_big"]
    assert [len(r) for r, _ in store.batches] == [2, 0]  # the rejected record dead-lettered in a second write
    assert store.batches[1][1][0].device_id == "dev-1" and len(commits[0].lags) == 1


def test_dead_lettered_messages_are_acknowledged_by_seq_so_the_device_stops_resending_them() -> None:
    """A message the hub refused was received and recorded as a dead letter: its seq is acknowledged like a stored
    one's, or the device would keep it and resend it forever. A retained one is not (the broker replays it)."""
    skewed = encode(anomaly("dev-1", ts=time.time() + 86_400, seq=3))
    unknown_field = encode(anomaly("dev-1", seq=2))[:-1] + b', "bogus": 1}'
    deliveries = [delivery(1, encode(anomaly("dev-1", seq=1))), delivery(2, unknown_field), delivery(3, skewed),
                  delivery(4, b"{"), delivery(5, encode(anomaly("dev-1", seq=4)), retained=True)]
    commits, acked, _ = run(Store(), deliveries)
    assert acked == [1, 2, 3, 4, 5]
    assert sorted(d.reason for d in commits[0].letters) == ["bad_json", "clock_skew", "retained", "schema"]
    assert commits[0].sequences == {"dev-1": [1, 2, 3]}
