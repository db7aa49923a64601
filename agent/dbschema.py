"""The agent database's schema, as sqlite-utils migrations (append new ones; never edit an applied one)."""

from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("fleetloop.agent")


@migrations()
def m001_initial(db: Database) -> None:
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


@migrations()
def m002_sequences(db: Database) -> None:
    # seq: stamped when a row first leaves (send order), kept for resends; delivered: when the broker acked it.
    # A row is deleted only when the hub acknowledges its seq (end-to-end), not on the broker's PUBACK.
    db.execute("ALTER TABLE outbox ADD COLUMN seq INTEGER")
    db.execute("ALTER TABLE outbox ADD COLUMN delivered REAL")
    db.execute("CREATE UNIQUE INDEX outbox_seq ON outbox (seq) WHERE seq IS NOT NULL")


@migrations()
def m003_reported(db: Database) -> None:
    # reported: why the window went to the hub when it was scored (anomaly, random, low_confidence); NULL: it stayed
    # in this log only (the hub may still ask for it). What a technician at the machine can tell from the log alone.
    db.execute("ALTER TABLE predictions ADD COLUMN reported TEXT")
