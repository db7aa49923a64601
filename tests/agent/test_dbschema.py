"""The agent's standard-library migrations keep sqlite-utils' bookkeeping: databases made by either open in the
other with nothing re-run, and the schema is the same statement for statement."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database, Migrations

from agent import dbschema
from agent.db import AgentDB
from agent.logview import anomalies


def _sqlite_utils_migrations() -> Migrations:
    """The agent's migrations as they were registered with sqlite-utils before the agent dropped it."""
    migrations = Migrations(dbschema.MIGRATION_SET)
    for name, fn in dbschema.MIGRATIONS:
        migrations(name=name)(lambda db, fn=fn: fn(db.conn))
    return migrations


def _schema(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"))
    finally:
        conn.close()


def test_a_database_made_by_sqlite_utils_opens_with_nothing_rerun(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old, isolation_level=None)
    _sqlite_utils_migrations().apply(Database(conn))
    conn.execute("INSERT INTO state (key, value) VALUES ('active', 'v7')")
    conn.close()
    db = AgentDB(old)
    assert db.get_state("active") == "v7"
    assert dbschema.apply(db.conn) == []
    assert dbschema.applied(db.conn) == [name for name, _ in dbschema.MIGRATIONS]
    db.close()
    fresh = tmp_path / "fresh.db"
    AgentDB(fresh).close()
    assert _schema(old) == _schema(fresh)


def test_sqlite_utils_sees_a_new_database_fully_migrated(tmp_path: Path) -> None:
    AgentDB(tmp_path / "a.db").close()
    conn = sqlite3.connect(tmp_path / "a.db")
    try:
        assert _sqlite_utils_migrations().pending(Database(conn)) == []
    finally:
        conn.close()


def test_a_failed_migration_leaves_no_trace_and_stays_pending(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    conn = sqlite3.connect(tmp_path / "a.db", isolation_level=None)

    def broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half (x)")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(dbschema, "MIGRATIONS", [*dbschema.MIGRATIONS, ("m999_broken", broken)])
    with pytest.raises(RuntimeError, match="migration bug"):
        dbschema.apply(conn)
    assert "m999_broken" not in dbschema.applied(conn)
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'half'").fetchone() is None
    assert dbschema.applied(conn) == [name for name, _ in dbschema.MIGRATIONS[:-1]]
    conn.close()


def _migrated_through(path: Path, last: str, monkeypatch: pytest.MonkeyPatch) -> sqlite3.Connection:
    """A database as an agent made it before the migrations after `last` existed (an autocommit connection)."""
    names = [name for name, _ in dbschema.MIGRATIONS]
    conn = sqlite3.connect(path, isolation_level=None)
    with monkeypatch.context() as m:
        m.setattr(dbschema, "MIGRATIONS", dbschema.MIGRATIONS[:names.index(last) + 1])
        dbschema.apply(conn)
    return conn


def test_a_database_from_before_the_alarm_index_keeps_its_rows_and_trades_the_ts_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.db"
    conn = _migrated_through(path, "m004_raw_windows", monkeypatch)
    conn.executemany("INSERT INTO predictions (trace_id, device_id, ts, window_start, window_end, model_version, "
                     "features, score, decision) VALUES (?, 'd1', ?, 0, 0, 'v1', x'00', 0.5, ?)",
                     [(f"t{i}", float(i), i % 3 == 0) for i in range(10)])
    conn.close()
    db = AgentDB(path)
    indexes = {r[0] for r in db.conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'predictions' "
                                             "AND type = 'index' AND sql IS NOT NULL")}
    assert indexes == {"predictions_alarms"}
    assert db.prediction_count() == 10
    assert [r["trace_id"] for r in anomalies(db, limit=3, start=1.0)] == ["t9", "t6", "t3"]
    plan = db.conn.execute("EXPLAIN QUERY PLAN SELECT ts FROM predictions WHERE decision = 1 AND ts >= 1 "
                           "ORDER BY ts DESC").fetchall()
    assert "predictions_alarms" in plan[0][3]
    db.close()


def test_raw_windows_from_before_the_random_slice_stay_alarms_without_context(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """m006 on a database with raw windows: each kept so far was an alarm's, of the window alone."""
    path = tmp_path / "old.db"
    conn = _migrated_through(path, "m005_alarm_index", monkeypatch)
    conn.execute("INSERT INTO raw_windows (trace_id, ts, unit, sensors, times, readings) "
                 "VALUES ('t1', 5.0, 'u1', '[\"a\"]', x'00', x'01')")
    conn.close()
    db = AgentDB(path)
    assert dbschema.applied(db.conn)[-1] == "m006_raw_window_context"
    row = db.raw_window("t1")
    assert row is not None and (row.alarm, row.service, row.times, row.readings) == (True, None, b"\x00", b"\x01")
    db.close()
