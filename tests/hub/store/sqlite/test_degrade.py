"""The SQLite store degrades loudly: a vanished file is an error (never a ghost write), a failed COMMIT keeps its
real error (retention, the same on both backends, is tested in tests/hub/store/contract)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hub.store.sqlite import SqliteHubStore
from shared.errors import StoreError
from tests.hub.store.messages import rec, sample

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


def test_a_disk_full_commit_reports_disk_full_not_the_rollback(sqlite_store: SqliteHubStore) -> None:
    store = sqlite_store
    store.counts()
    # SQLITE_FULL as a full disk gives it, on this thread's connection: SQLite rolls back on its own, and the
    # ROLLBACK that followed raised "no transaction is active" in place of the real error.
    store._conn().execute("PRAGMA max_page_count = 8")  # the only way to fill this connection's disk
    with pytest.raises(StoreError, match="database or disk is full"):
        store.ingest_batch([rec(sample()) for _ in range(2000)])
    store._conn().execute("PRAGMA max_page_count = 1073741823")
    assert store.ingest_batch([rec(sample())]).stored == {"sample": 1}  # the connection is usable again
