"""The agent database's schema as migrations on the standard library's sqlite3 (append new ones; never edit one).

The bookkeeping is sqlite-utils' ``Migrations`` table (``_sqlite_migrations``, set ``fleetloop.agent``), kept
byte for byte: databases made before the agent dropped sqlite-utils (it weighs ~24 MB of resident memory on a
gateway) open without re-running anything, and the hub's tooling still reads which migrations ran.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Callable

MIGRATION_SET = "fleetloop.agent"
MIGRATIONS_TABLE = "_sqlite_migrations"
_MIGRATIONS_DDL = (
    f'CREATE TABLE IF NOT EXISTS "{MIGRATIONS_TABLE}" (\n   "id" INTEGER PRIMARY KEY,\n   "migration_set" TEXT,\n'
    '   "name" TEXT,\n   "applied_at" TEXT\n)',
    f'CREATE UNIQUE INDEX IF NOT EXISTS "idx_{MIGRATIONS_TABLE}_migration_set_name"\n'
    f'    ON "{MIGRATIONS_TABLE}" ("migration_set", "name")',
)

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next migration, under its function name."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


def applied(conn: sqlite3.Connection) -> list[str]:
    """Names of this set's migrations the database has run, in order ([] for a database without the table)."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                          (MIGRATIONS_TABLE,)).fetchone()
    if exists is None:
        return []
    rows = conn.execute(f'SELECT name FROM "{MIGRATIONS_TABLE}" WHERE migration_set = ? ORDER BY rowid',
                        (MIGRATION_SET,))
    return [r[0] for r in rows]


def apply(conn: sqlite3.Connection) -> list[str]:
    """Run the pending migrations, each in one transaction with its record; return the names run.

    `conn` must be in autocommit mode (``isolation_level=None``). The pending list is read inside
    ``BEGIN IMMEDIATE``, so two processes opening a database at once never run a migration twice.
    """
    done = set(applied(conn))
    if all(name in done for name, _ in MIGRATIONS):
        return []  # the common case: one read, no write lock
    ran: list[str] = []
    for name, fn in MIGRATIONS:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for ddl in _MIGRATIONS_DDL:
                conn.execute(ddl)
            if name not in set(applied(conn)):
                fn(conn)
                conn.execute(f'INSERT INTO "{MIGRATIONS_TABLE}" (migration_set, name, applied_at) VALUES (?, ?, ?)',
                             (MIGRATION_SET, name, str(datetime.datetime.now(datetime.UTC))))
                ran.append(name)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return ran


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE predictions (
            id INTEGER PRIMARY KEY,
            trace_id TEXT NOT NULL UNIQUE,
            device_id TEXT NOT NULL,
            ts REAL NOT NULL,
            unit TEXT,
            window_start REAL NOT NULL,
            window_end REAL NOT NULL,
            model_version TEXT NOT NULL,
            features BLOB NOT NULL,
            score REAL,
            decision INTEGER NOT NULL,
            shadow_version TEXT,
            shadow_score REAL
        )"""
    )
    db.execute("CREATE INDEX predictions_ts ON predictions (ts)")
    db.execute(
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            msg_id TEXT NOT NULL,
            topic TEXT NOT NULL,
            payload BLOB NOT NULL,
            priority INTEGER NOT NULL,
            retain INTEGER NOT NULL DEFAULT 0,
            created REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt REAL NOT NULL DEFAULT 0
        )"""
    )
    db.execute("CREATE INDEX outbox_order ON outbox (priority, id)")
    db.execute(
        """CREATE TABLE annotations (
            annotation_id TEXT PRIMARY KEY,
            trace_id TEXT,
            start_ts REAL,
            end_ts REAL,
            label TEXT NOT NULL,
            fault_type TEXT,
            technician_id TEXT NOT NULL,
            confidence REAL NOT NULL,
            signal TEXT NOT NULL,
            note TEXT,
            created REAL NOT NULL
        )"""
    )
    db.execute("CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


@migration
def m002_sequences(db: sqlite3.Connection) -> None:
    # seq: stamped when a row first leaves (send order), kept for resends; delivered: when the broker acked it.
    # A row is deleted only when the hub acknowledges its seq (end-to-end), not on the broker's PUBACK.
    db.execute("ALTER TABLE outbox ADD COLUMN seq INTEGER")
    db.execute("ALTER TABLE outbox ADD COLUMN delivered REAL")
    db.execute("CREATE UNIQUE INDEX outbox_seq ON outbox (seq) WHERE seq IS NOT NULL")


@migration
def m003_reported(db: sqlite3.Connection) -> None:
    # reported: why the window went to the hub when it was scored (anomaly, random, low_confidence); NULL: it stayed
    # in this log only (the hub may still ask for it). What a technician at the machine can tell from the log alone.
    db.execute("ALTER TABLE predictions ADD COLUMN reported TEXT")


@migration
def m004_raw_windows(db: sqlite3.Connection) -> None:
    # The raw readings of the newest alarm windows (a ring of `AgentSettings.raw_windows_keep`), for the hub to ask
    # for (``upload_windows``). sensors: JSON list of names; times: float64 per reading; readings: float64, rows of
    # one reading × sensors (row-major), exactly what the window held.
    db.execute(
        """CREATE TABLE raw_windows (
            trace_id TEXT PRIMARY KEY,
            ts REAL NOT NULL,
            unit TEXT,
            sensors TEXT NOT NULL,
            times BLOB NOT NULL,
            readings BLOB NOT NULL
        )"""
    )
    db.execute("CREATE INDEX raw_windows_ts ON raw_windows (ts)")


@migration
def m005_alarm_index(db: sqlite3.Connection) -> None:
    # Predictions are read by time only for the alarms (`agent.logview`; other reads go by trace id, by id or scan):
    # index the ts of alarm rows alone. An index entry on every row was a tenth of a prediction's insert.
    db.execute("DROP INDEX IF EXISTS predictions_ts")
    db.execute("CREATE INDEX predictions_alarms ON predictions (ts) WHERE decision = 1")


@migration
def m006_raw_window_context(db: sqlite3.Connection) -> None:
    # Raw windows of random samples too (the unbiased slice the hub learns regime statistics from), in a ring of their
    # own: alarm 1 for an alarm window (every window kept before), 0 for a sample. service: feature set 2's readings
    # run `shared.history.CONTEXT` back before the window, and the unit had seen this many before the first of them
    # (`shared.messages.RawWindow.service`); NULL: the readings are the window alone.
    db.execute("ALTER TABLE raw_windows ADD COLUMN alarm INTEGER NOT NULL DEFAULT 1")
    db.execute("ALTER TABLE raw_windows ADD COLUMN service INTEGER")
