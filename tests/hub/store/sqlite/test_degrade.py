"""The SQLite store degrades loudly: a vanished file is an error (never a ghost write), a failed COMMIT keeps its
real error, and retention prunes what grows while keeping what labels and training name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hub.store import DeadLetter, IngestRecord
from hub.store.retention import RetentionSettings
from hub.store.sqlite import SqliteHubStore
from shared.errors import StoreError
from shared.messages import Annotation
from tests.hub.store.messages import T0, rec, sample, stats, status

DAY = 86400.0


def test_a_deleted_database_file_refuses_reads_and_writes(tmp_path: Path) -> None:
    store = SqliteHubStore(tmp_path / "hub.db")
    try:
        store.ingest_batch([rec(sample())])
        os.unlink(tmp_path / "hub.db")
        with pytest.raises(StoreError, match="was deleted"):
            store.ingest_batch([rec(sample())])  # before: committed into the unlinked file, then acknowledged
        with pytest.raises(StoreError, match="was deleted"):
            store.counts()  # /health reads this
    finally:
        store.close()


def test_a_replaced_database_file_refuses_writes(tmp_path: Path) -> None:
    store = SqliteHubStore(tmp_path / "hub.db")
    try:
        store.counts()
        os.replace(tmp_path / "hub.db", tmp_path / "old.db")
        SqliteHubStore(tmp_path / "hub.db").close()  # another file under the same name
        with pytest.raises(StoreError, match="was replaced"):
            store.ingest_batch([rec(sample())])
    finally:
        store.close()


def test_a_disk_full_commit_reports_disk_full_not_the_rollback(store: SqliteHubStore) -> None:
    store.counts()
    # SQLITE_FULL as a full disk gives it, on this thread's connection: SQLite rolls back on its own, and the
    # ROLLBACK that followed raised "no transaction is active" in place of the real error.
    store._conn().execute("PRAGMA max_page_count = 8")  # the only way to fill this connection's disk
    with pytest.raises(StoreError, match="database or disk is full"):
        store.ingest_batch([rec(sample()) for _ in range(2000)])
    store._conn().execute("PRAGMA max_page_count = 1073741823")
    assert store.ingest_batch([rec(sample())]).stored == {"sample": 1}  # the connection is usable again


def test_an_implausible_future_status_does_not_freeze_presence(store: SqliteHubStore) -> None:
    # Written before ingest bounded timestamps: a status stamped a year ahead.
    store.ingest_batch([IngestRecord(status("dev-1", "online", T0 + 365 * DAY), T0)])
    store.ingest_batch([IngestRecord(status("dev-1", "offline", T0 + 10), T0 + 10)])
    device = store.device("dev-1")
    assert device is not None and device.online is False and device.status_ts == T0 + 10


def test_retention_prunes_old_rows_and_keeps_what_labels_name(store: SqliteHubStore) -> None:
    now = T0 + 400 * DAY
    old = [sample(ts=T0 + i) for i in range(5)]
    named, in_range, fresh = old[0], old[1], sample(ts=now - DAY)
    store.ingest_batch([rec(s) for s in [*old, fresh]] + [rec(stats(period_end=T0)), rec(stats(period_end=now))])
    store.ingest_batch([
        IngestRecord(Annotation(device_id="dev-1", ts=T0 + 10, trace_id=named.trace_id, label="fault",
                                technician_id="ann"), T0 + 10),
        IngestRecord(Annotation(device_id="dev-1", ts=T0 + 10, start_ts=in_range.ts, end_ts=in_range.ts,
                                label="fault", technician_id="ann"), T0 + 10),
    ])
    store.freeze_eval_slice({old[2].trace_id: True}, ts=T0)
    store.ingest_batch([], [DeadLetter("t", b"x" * 100, "bad_json", "d", ts) for ts in (T0, now, now, now)])
    for ts in (T0, T0 + 1, now):
        store.record_event("drift", {"scope": "fleet"}, ts=ts)

    pruned = RetentionSettings(dead_letters_max_rows=2).cutoffs(now)
    result = store.prune(pruned, dead_letters_max_rows=2, dead_letters_max_bytes=10_000, batch_rows=2)

    kept = {p.trace_id for p in store.predictions(0, now + 1)}
    assert kept == {named.trace_id, in_range.trace_id, old[2].trace_id, fresh.trace_id}
    assert result.samples == 2 and result.stats == 1 and result.events == 2
    assert store.counts().dead_letters == 2 and result.dead_letters == 2  # one by age, one by count
    assert store.counts().stats == 1


def test_retention_bounds_dead_letters_by_bytes(store: SqliteHubStore) -> None:
    store.ingest_batch([], [DeadLetter("t", b"x" * 1000, "bad_json", "", T0 + i) for i in range(10)])
    store.prune(RetentionSettings().cutoffs(T0), dead_letters_max_rows=100, dead_letters_max_bytes=3500)
    kept = store.dead_letters()
    assert [d.ts for d in kept] == [T0 + 9, T0 + 8, T0 + 7]  # the newest that fit in 3,500 bytes

