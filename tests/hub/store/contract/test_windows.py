"""Raw sensor windows on both backends: requested → stored or unavailable through ingest (never downgraded, only
for the device asked), re-asked until answered, given up, pruned."""

from __future__ import annotations

from hub.store.ports import HubStore
from hub.store.rows import IngestRecord
from shared.messages import Anomaly, RawWindow, Sample


def _window(trace_id: str, device_id: str = "dev-1", *, available: bool = True) -> RawWindow:
    if not available:
        return RawWindow(device_id=device_id, ts=50.0, trace_id=trace_id, available=False)
    return RawWindow(device_id=device_id, ts=50.0, trace_id=trace_id, unit="u1", sensors=["t", "p"],
                     timestamps=[1.0, 2.0, 3.0], values=[[0.5, 0.25, -1.0], [10.0, 11.0, 12.5]])


def test_a_requested_window_arrives_through_ingest(store: HubStore) -> None:
    assert store.request_raw_windows([("tr-1", "dev-1"), ("tr-2", "dev-1")], ts=100.0) == ["tr-1", "tr-2"]
    assert store.request_raw_windows([("tr-1", "dev-1")], ts=101.0) == []  # asked already
    row = store.raw_window("tr-1")
    assert row is not None and (row.state, row.requested_ts, row.asks, row.sensors) == ("requested", 100.0, 0, ())
    result = store.ingest_batch([IngestRecord(_window("tr-1"), 120.0), IngestRecord(_window("tr-2", available=False),
                                                                                    121.0)])
    assert result.stored == {"window": 2}
    got = store.raw_window("tr-1")
    assert got is not None and got.state == "stored" and got.received_ts == 120.0 and got.unit == "u1"
    assert got.sensors == ("t", "p") and got.timestamps == (1.0, 2.0, 3.0)
    assert got.values == ((0.5, 0.25, -1.0), (10.0, 11.0, 12.5))
    assert store.raw_window("tr-2").state == "unavailable"  # type: ignore[union-attr]
    # a redelivery, a late "unavailable" or another device's window never replaces a stored one
    again = store.ingest_batch([IngestRecord(_window("tr-1"), 130.0), IngestRecord(_window("tr-1", available=False),
                                                                                   131.0)])
    assert again.stored == {} and again.duplicates == {"window": 2}
    store.ingest_batch([IngestRecord(_window("tr-1", "dev-2"), 132.0)])
    kept = store.raw_window("tr-1")
    assert kept is not None and (kept.state, kept.device_id, kept.received_ts) == ("stored", "dev-1", 120.0)
    assert store.raw_window("nope") is None


def test_unanswered_requests_are_asked_again_then_given_up_and_pruned(store: HubStore) -> None:
    store.request_raw_windows([("a", "dev-1"), ("b", "dev-2")], ts=100.0)
    assert [r.trace_id for r in store.due_raw_windows(asked_before=100.0)] == ["a", "b"]  # never asked yet
    store.mark_raw_windows_asked(["a", "b"], ts=100.0)
    assert store.due_raw_windows(asked_before=100.0) == []
    assert [r.trace_id for r in store.due_raw_windows(asked_before=150.0)] == ["a", "b"]
    store.mark_raw_windows_asked(["a"], ts=150.0)
    assert store.raw_window("a").asks == 2  # type: ignore[union-attr]
    assert store.expire_raw_window_requests(max_asks=2, asked_before=140.0, ts=200.0) == 0  # asked since
    assert store.expire_raw_window_requests(max_asks=2, asked_before=160.0, ts=200.0) == 1
    a = store.raw_window("a")
    assert a is not None and a.state == "unavailable" and a.received_ts == 200.0
    assert [r.trace_id for r in store.due_raw_windows(asked_before=1000.0)] == ["b"]
    store.request_raw_windows([("c", "dev-1")], ts=300.0)
    assert store.prune_raw_windows(before_ts=200.0) == 2
    assert store.raw_window("a") is None and store.raw_window("c") is not None


def test_stored_windows_are_listed_newest_first_with_their_history_count(store: HubStore) -> None:
    """What the hub learns regime statistics from (`hub.training.regimes`): every stored window since a time,
    with how many readings its unit had seen before it (feature set 2's `service`)."""
    with_context = RawWindow(device_id="dev-1", ts=50.0, trace_id="ctx", unit="u1", sensors=["t"],
                             timestamps=[1.0, 2.0], values=[[0.5, 0.75]], service=40)
    store.ingest_batch([IngestRecord(_window("old"), 100.0), IngestRecord(_window("gone", available=False), 110.0),
                        IngestRecord(with_context, 120.0)])
    assert [r.trace_id for r in store.stored_raw_windows(since=0.0)] == ["ctx", "old"]
    assert [r.trace_id for r in store.stored_raw_windows(since=0.0, limit=1)] == ["ctx"]
    assert [r.trace_id for r in store.stored_raw_windows(since=101.0)] == ["ctx"]
    ctx, old = store.stored_raw_windows(since=0.0)
    assert ctx.service == 40 and old.service is None


def test_the_random_slice_without_a_raw_window_is_listed_newest_first(store: HubStore) -> None:
    """What the hub asks devices for to learn regime statistics from: random-slice predictions (samples and the
    alarms drawn with them) since a time that no raw window row names yet."""
    common = {"window_start": 0.0, "window_end": 1.0, "score": 0.2, "threshold": 0.5, "features": [0.1]}
    store.ingest_batch([IngestRecord(m, 500.0) for m in (
        Sample(device_id="dev-1", ts=100.0, trace_id="old", reason="random", decision=False, **common),
        Sample(device_id="dev-2", ts=200.0, trace_id="s1", reason="random", decision=False, **common),
        Sample(device_id="dev-1", ts=210.0, trace_id="low", reason="low_confidence", decision=False, **common),
        Anomaly(device_id="dev-1", ts=220.0, trace_id="drawn", sampled=True, decision=True, **common),
        Anomaly(device_id="dev-1", ts=230.0, trace_id="alarm", decision=True, **common),
        Sample(device_id="dev-1", ts=240.0, trace_id="asked", reason="random", decision=False, **common),
        Sample(device_id="dev-2", ts=250.0, trace_id="s2", reason="random", decision=False, **common),
    )])
    store.request_raw_windows([("asked", "dev-1")], ts=500.0)
    assert store.random_windows_unasked(since=150.0, limit=10) == [("s2", "dev-2"), ("drawn", "dev-1"),
                                                                   ("s1", "dev-2")]
    assert store.random_windows_unasked(since=0.0, limit=2) == [("s2", "dev-2"), ("drawn", "dev-1")]
    assert [t for t, _ in store.random_windows_unasked(since=0.0, limit=10)][-1] == "old"
    store.request_raw_windows(store.random_windows_unasked(since=0.0, limit=10), ts=501.0)
    assert store.random_windows_unasked(since=0.0, limit=10) == []


def test_many_traces_windows_are_read_at_once(store: HubStore) -> None:
    """`raw_windows_of`: what a retrain restates its labelled rows from, in a few reads instead of one a trace
    (more traces than one IN (...) binds)."""
    store.request_raw_windows([(f"tr-{i:04d}", "dev-1") for i in range(1200)], ts=100.0)
    store.ingest_batch([IngestRecord(_window(f"tr-{i:04d}"), 120.0) for i in range(0, 1200, 3)])
    asked = [f"tr-{i:04d}" for i in range(0, 1300, 2)] + ["tr-0000"]  # some never requested, one twice
    got = store.raw_windows_of(asked)
    assert set(got) == {t for t in asked if int(t[3:]) < 1200}
    assert all(got[t].state == ("stored" if int(t[3:]) % 3 == 0 else "requested") for t in got)
    assert got["tr-0600"] == store.raw_window("tr-0600")
    assert store.raw_windows_of([]) == {}
