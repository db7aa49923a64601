"""Per-device sequence tracking on a real file: holes open for skipped seqs, split and close as they fill."""

from __future__ import annotations

from hub.store.ports import HubStore


def _holes(store: HubStore, device: str = "d") -> list[tuple[int, int]]:
    return [(h.lo, h.hi) for h in store.sequence_holes(device_id=device)]


def test_holes_open_split_and_close(store: HubStore) -> None:
    assert store.track_sequences({"d": [5, 6]}, now=1.0).opened == 0  # first seen mid-stream: nothing is owed
    assert store.device_sequence("d") == 6
    assert store.track_sequences({"d": [10, 7]}, now=2.0).opened == 1
    assert _holes(store) == [(8, 9)]
    update = store.track_sequences({"d": [8, 6]}, now=3.0)  # 6 is a redelivery
    assert (update.opened, update.filled) == (0, 1)
    assert _holes(store) == [(9, 9)]
    [hole] = store.sequence_holes(device_id="d", reported=False)
    assert len(store.report_holes([hole], ts=4.0)) == 1
    assert store.report_holes([hole], ts=5.0) == []  # reported once
    [event] = store.events(kind="sequence_gap")
    assert event.payload == {"device_id": "d", "lo": 9, "hi": 9, "missing": 1, "detected": 2.0}
    store.mark_holes_requested([hole.id], ts=6.0)
    assert store.sequence_holes(reported=True)[0].requests == 1
    assert store.track_sequences({"d": [9], "e": [1, 3]}, now=7.0).gaps_closed == 1
    assert _holes(store) == [] and _holes(store, "e") == [(2, 2)]
    store.close()
