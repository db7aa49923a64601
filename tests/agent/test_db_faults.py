"""The agent database under hard failures, on real SQLite files: an empty or foreign file is refused, a full
database degrades by dropping the lowest priority, a damaged page is recovered around (issue 10, item 8).

The full-disk cases here emulate the full disk with ``PRAGMA max_page_count`` (SQLite's SQLITE_FULL, the same error
a full filesystem gives) to test the policy quickly; tests/field/test_agent_faults.py fills a real tmpfs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from agent.db import PRIORITY_ANNOTATION, PRIORITY_ANOMALY, PRIORITY_SAMPLE, AgentDB, OutboxMessage, PredictionRow
from agent.dbfile import StorageFullError
from agent.dbrecover import recover, reset
from agent.storage import Storage
from shared.errors import StoreError
from shared.ids import new_id


def _row(i: int) -> PredictionRow:
    return PredictionRow(new_id(), "dev-1", float(i), "pump-1", 0.0, float(i), "v1",
                         np.random.default_rng(i).random(36, dtype=np.float32).tobytes(), 0.1, False)


def _msg(priority: int) -> OutboxMessage:
    return OutboxMessage(new_id(), "t", b"x" * 300, priority)


def test_a_missing_database_is_created(tmp_path: Path) -> None:
    AgentDB(tmp_path / "agent.db").close()
    assert (tmp_path / "agent.db").read_bytes()[:16] == b"SQLite format 3\x00"
    assert not list(tmp_path.glob("*.creating*"))


def test_an_empty_file_is_refused_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    path.write_bytes(b"")
    with pytest.raises(StoreError, match=r"0 bytes.*fleetloop agent db reset --data-dir"):
        AgentDB(path)
    assert path.stat().st_size == 0


def test_a_file_that_is_not_ours_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk" / "agent.db"
    junk.parent.mkdir()
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not a SQLite database"):
        AgentDB(junk)
    other = tmp_path / "other" / "agent.db"
    other.parent.mkdir()
    sqlite3.connect(other).execute("CREATE TABLE x (y)").connection.close()
    with pytest.raises(StoreError, match="not an agent database"):
        AgentDB(other)


def test_a_full_commit_raises_storage_full_not_a_rollback_error(tmp_path: Path) -> None:
    db = AgentDB(tmp_path / "agent.db")
    pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
    db.conn.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(StorageFullError, match="full"):
        db.write_batch([_row(i) for i in range(500)], [])
    assert not db.conn.in_transaction and db.prediction_count() == 0


def test_a_full_database_drops_the_lowest_priority_and_keeps_the_rest(tmp_path: Path) -> None:
    db = AgentDB(tmp_path / "agent.db")
    storage = Storage(db, reserve_bytes=0)
    db.write_batch([_row(i) for i in range(2000)], [_msg(PRIORITY_SAMPLE) for _ in range(300)])
    pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
    db.conn.execute(f"PRAGMA max_page_count={pages}")  # the disk is full from here on
    kept = 0
    for i in range(2000, 6000, 50):
        storage.write_batch([_row(j) for j in range(i, i + 50)],
                            [_msg(PRIORITY_ANOMALY), _msg(PRIORITY_SAMPLE), _msg(PRIORITY_ANNOTATION)])
        kept += 2
        storage._made_room_at = -1.0  # each batch may make room (the real loop allows it once a second)
    assert storage.degraded and storage.dropped > 0
    count = dict(db.conn.execute("SELECT priority, count(*) FROM outbox GROUP BY priority").fetchall())
    assert count[PRIORITY_ANOMALY] + count[PRIORITY_ANNOTATION] == kept  # never dropped to make room
    assert count.get(PRIORITY_SAMPLE, 0) < 300 + 80  # samples went first
    newest = db.conn.execute("SELECT max(ts) FROM predictions").fetchone()[0]
    assert newest == 5999.0  # the newest predictions are there: the oldest made room
    assert db.integrity_ok()


def test_recover_copies_every_readable_row_around_a_damaged_page(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    db = AgentDB(path)
    db.write_batch([_row(i) for i in range(3000)], [_msg(PRIORITY_ANOMALY) for _ in range(20)])
    db.set_state({"model.active": "v7"})
    leaves = [r[0] for r in db.conn.execute(
        "SELECT pageno FROM dbstat WHERE name = 'predictions' AND pagetype = 'leaf' ORDER BY pageno")]
    page_size = db.conn.execute("PRAGMA page_size").fetchone()[0]
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with path.open("r+b") as f:
        f.seek((leaves[len(leaves) // 2] - 1) * page_size)
        f.write(b"\xa5" * page_size)

    report = recover(path)
    copied = report["rows_copied"]
    assert isinstance(copied, dict)
    assert copied["state"] == 1 and copied["outbox"] == 20
    assert 2800 < copied["predictions"] < 3000  # one leaf of about 20 rows lost, the rest copied
    assert Path(str(report["damaged_copy"])).exists()
    again = AgentDB(path)
    assert again.get_state("model.active") == "v7" and again.integrity_ok()
    assert again.prediction_count() == copied["predictions"]


def test_reset_moves_the_database_aside(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    AgentDB(path).close()
    moved = reset(path)
    assert moved is not None and moved.exists() and not path.exists()
    assert reset(path) is None
