"""Ingest: every kind round-trips, redeliveries are stored once, dead letters, out-of-range counts, reads."""

from __future__ import annotations

from hub.store import DeadLetter
from hub.store.ports import HubStore
from shared.messages import ModelEvent
from shared.wire import replace
from tests.hub.store.messages import T0, annotation, anomaly, rec, sample, stats


def test_every_kind_round_trips(store: HubStore) -> None:
    a, s, st = anomaly(), sample(), stats()
    n = annotation(trace_id=a.trace_id)
    ev = ModelEvent(device_id="dev-1", ts=T0, event="health_ok", version="v2", metrics={"latency_ms": 2.5})
    result = store.ingest_batch([rec(a), rec(s), rec(st), rec(n), rec(ev)])
    assert result.stored == {"anomaly": 1, "sample": 1, "stats": 1, "annotation": 1, "model_event": 1}

    got = store.prediction(a.trace_id)
    assert got is not None and got.kind == "anomaly" and got.reason is None
    assert got.features == tuple(a.features)  # lossless, 1e300 included
    assert (got.score, got.threshold, got.decision, got.msg_id, got.received_at) == (0.93, 0.5, True, a.msg_id,
                                                                                       T0 + 1)
    assert store.prediction(s.trace_id).reason == "random"  # type: ignore[union-attr]
    assert store.prediction("nope") is None

    [row] = store.stats_between(T0 - 1, T0 + 1)
    assert (row.feature_hist, row.score_hist, row.windows, row.anomalies) == ([[10, 80, 10], [50, 50]], [90, 10],
                                                                             100, 3)
    [note] = store.annotations(trace_id=a.trace_id)
    assert (note.annotation_id, note.label, note.fault_type, note.note) == (n.annotation_id, "fault", "bearing",
                                                                            "noisy")
    [event] = store.model_events(device_id="dev-1")
    assert (event.event, event.version, event.metrics) == ("health_ok", "v2", {"latency_ms": 2.5})


def test_a_message_seen_twice_is_stored_once(store: HubStore) -> None:
    a, st, n = anomaly(), stats(), annotation()
    first = store.ingest_batch([rec(a), rec(a), rec(st), rec(n)])  # a duplicate inside one batch
    assert first.stored == {"anomaly": 1, "stats": 1, "annotation": 1}
    assert first.duplicates == {"anomaly": 1}
    again = store.ingest_batch([rec(a), rec(st), rec(n)])  # a QoS 1 redelivery later
    assert again.stored == {} and again.duplicates == {"anomaly": 1, "stats": 1, "annotation": 1}
    # The same trace as a sample (a different message) is still the same prediction.
    store.ingest_batch([rec(replace(sample(), trace_id=a.trace_id))])
    counts = store.counts()
    assert (counts.anomalies, counts.samples, counts.stats, counts.annotations) == (1, 0, 1, 1)


def test_dead_letters_keep_the_head_of_the_payload_and_count_by_reason(store: HubStore) -> None:
    huge = b"x" * 100_000
    store.ingest_batch([], [DeadLetter("fleetloop/dev-1/anomaly", huge, "too_large", "100000 bytes", T0,
                                       device_id="dev-1")])
    store.add_dead_letter("fleetloop/dev-1/stats", b"{", "bad_json", "EOF", T0 + 1, device_id="dev-1")
    store.add_dead_letter("fleetloop/dev-2/stats", b"{}", "schema", "d" * 10_000, T0 + 2)
    assert store.dead_letter_counts() == {"bad_json": 1, "schema": 1, "too_large": 1}
    newest, middle, oldest = store.dead_letters()
    assert (newest.reason, len(newest.detail), newest.device_id) == ("schema", 2000, None)
    assert (middle.payload, middle.payload_size, middle.device_id) == (b"{", 1, "dev-1")
    assert (len(oldest.payload), oldest.payload_size) == (4096, 100_000)
    assert [d.reason for d in store.dead_letters(reason="bad_json")] == ["bad_json"]
    assert store.counts().dead_letters == 3


def test_counts_beyond_64_bits_are_rejected_not_fatal(store: HubStore) -> None:
    bad, good = stats(windows=2**64), stats()
    bad_hist = stats(feature_hist=[[2**70]])
    result = store.ingest_batch([rec(bad), rec(good), rec(bad_hist)])
    assert [(r.index, r.reason) for r in result.rejected] == [(0, "out_of_range"), (2, "out_of_range")]
    assert result.stored == {"stats": 1}
    assert [s.msg_id for s in store.stats_between(0, T0 + 1)] == [good.msg_id]


def test_range_queries_filter_by_time_kind_and_device(store: HubStore) -> None:
    msgs = [anomaly("dev-1", ts=T0), sample("dev-2", ts=T0 + 10), anomaly("dev-3", ts=T0 + 20)]
    store.ingest_batch([rec(m) for m in msgs] + [rec(stats(d, period_end=T0 + i)) for i, d in
                                                 enumerate(["dev-1", "dev-2", "dev-3"])])
    assert [p.device_id for p in store.predictions(T0, T0 + 20)] == ["dev-1", "dev-2"]  # end is exclusive
    assert [p.device_id for p in store.predictions(T0, T0 + 21, kind="anomaly")] == ["dev-1", "dev-3"]
    assert [p.device_id for p in store.predictions(0, 2e9, device_ids=["dev-3"], limit=5)] == ["dev-3"]
    assert store.predictions(0, 2e9, device_ids=[]) == []
    assert [s.device_id for s in store.stats_between(T0 + 1, T0 + 3)] == ["dev-2", "dev-3"]
    assert [s.device_id for s in store.stats_between(T0, T0 + 3, device_ids=["dev-1", "dev-3"])] == ["dev-1", "dev-3"]
    store.ingest_batch([rec(annotation("dev-1", ts=T0 + i)) for i in range(5)])
    assert len(store.annotations(since=T0 + 1, until=T0 + 4)) == 3
    assert len(store.annotations(device_id="dev-1", limit=2)) == 2


def test_received_predictions_are_a_stages_traffic_newest_first(store: HubStore) -> None:
    """What the hub received since a stage began, by kind and reason, stamped no earlier than the clock skew allows."""
    early, late = anomaly("dev-1", ts=T0), anomaly("dev-2", ts=T0 + 5)
    before, stale = anomaly("dev-3", ts=T0 + 3), anomaly("dev-1", ts=T0 - 100)
    rand, unsure = sample("dev-1", ts=T0 + 2), replace(sample("dev-1", ts=T0 + 4), reason="low_confidence")
    store.ingest_batch([rec(early, T0 + 1), rec(late, T0 + 6), rec(before, T0 - 5), rec(stale, T0 + 50),
                        rec(rand, T0 + 30), rec(unsure, T0 + 30)])

    def got(**kw: object) -> list[str]:
        args: dict = {"received_since": T0, "ts_since": T0 - 10, "kind": "anomaly", "limit": 10, **kw}
        return [p.trace_id for p in store.received_predictions(**args)]

    assert got() == [late.trace_id, early.trace_id]  # newest first; received earlier or stamped too early: out
    assert got(limit=1) == [late.trace_id]
    assert got(device_ids=["dev-1", "dev-3"]) == [early.trace_id] and got(device_ids=[]) == []
    assert got(kind="sample") == [unsure.trace_id, rand.trace_id]
    assert got(kind="sample", reason="random") == [rand.trace_id]
    [row] = store.received_predictions(received_since=T0 + 20, ts_since=T0 - 10, kind="sample", reason="random",
                                       limit=10)
    assert row.features == tuple(rand.features) and row.received_at == T0 + 30
