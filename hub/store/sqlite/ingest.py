"""Ingest on SQLite: batches of device messages and dead letters in, and the stored telemetry back out.

A batch is one transaction: every table's rows (``INSERT OR IGNORE`` on the message keys, so a
redelivery is stored once), the devices' activity, their statuses (presence ordering) and dead letters.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from hub.store.presence import Presence, applied, status_applies
from hub.store.rollup import DAY_HOURS, batch_deltas, blob_sums, cumulate, day_groups, read_sums, sums_blob
from hub.store.rows import (
    DEAD_LETTER_PAYLOAD_BYTES,
    AnnotationRow,
    DeadLetter,
    DeadLetterRow,
    IngestRecord,
    IngestResult,
    ModelEventRow,
    PredictionKind,
    PredictionRow,
    StatsRow,
    StatsSum,
    StoreCounts,
)
from hub.store.sqlite.batch import BatchRows, batch_rows, ingest_result
from hub.store.sqlite.common import DETAIL_CHARS, annotation_from_row, prediction_from_row
from hub.store.sqlite.connection import SqliteConnection
from hub.store.sqlite.windows import STORE_WINDOW
from shared.messages import Status

_PREDICTION_SQL = (
    "INSERT OR IGNORE INTO predictions (trace_id, msg_id, kind, device_id, ts, received_at, model_version, unit, "
    "window_start, window_end, score, threshold, decision, reason, n_features, features) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_STATS_SQL = (
    "INSERT OR IGNORE INTO stats (msg_id, device_id, ts, received_at, model_version, period_start, period_end, "
    "windows, anomalies, samples, bad_readings, bad_rows, inference_errors, nan_scores, feature_hist, score_hist, "
    f"latency_p50_ms, latency_p99_ms, layout, counts) VALUES ({', '.join('?' * 20)})"
)
_ANNOTATION_SQL = (
    "INSERT OR IGNORE INTO annotations (annotation_id, msg_id, device_id, ts, received_at, model_version, trace_id, "
    "start_ts, end_ts, label, fault_type, technician_id, confidence, signal, note) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_MODEL_EVENT_SQL = (
    "INSERT OR IGNORE INTO model_events (msg_id, device_id, ts, received_at, model_version, event, version, detail, "
    "metrics) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_DEAD_LETTER_SQL = (
    "INSERT INTO dead_letters (ts, topic, device_id, reason, detail, payload, payload_size) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# Activity: the device exists from its first message; last_seen (hub clock) and last_ts only move forward.
_SEEN_SQL = (
    "INSERT INTO devices (device_id, online, first_seen, last_seen, last_ts) VALUES (?, 0, ?, ?, ?) "
    "ON CONFLICT(device_id) DO UPDATE SET last_seen = max(coalesce(last_seen, excluded.last_seen), "
    "excluded.last_seen), last_ts = max(coalesce(last_ts, excluded.last_ts), excluded.last_ts)"
)


def write_rows(conn: sqlite3.Connection, rows: BatchRows) -> tuple[dict[str, int], dict[str, int], int]:
    """Store a batch's rows inside the caller's transaction: (stored, duplicates) by kind, statuses applied.

    The one write path of device messages and annotations: `ingest_batch` and an incident's verdict use it.
    """
    stored: dict[str, int] = {}
    duplicates: dict[str, int] = {}
    if rows.stats:  # row by row: the roll-ups take only the rows that were new
        new = [row for row in rows.stats if conn.execute(_STATS_SQL, row).rowcount]
        stored["stats"], duplicates["stats"] = len(new), len(rows.stats) - len(new)
        _roll_up(conn, new)
    for kind, sql, table_rows in (
        ("anomaly", _PREDICTION_SQL, rows.anomalies),
        ("sample", _PREDICTION_SQL, rows.samples),
        ("annotation", _ANNOTATION_SQL, rows.annotations),
        ("model_event", _MODEL_EVENT_SQL, rows.model_events),
        ("window", STORE_WINDOW.format(p="?"), rows.windows),
    ):
        if table_rows:
            inserted = conn.executemany(sql, table_rows).rowcount
            stored[kind] = inserted
            duplicates[kind] = len(table_rows) - inserted
    if rows.seen:
        conn.executemany(_SEEN_SQL, [(d, at, at, ts) for d, (at, ts) in rows.seen.items()])
    return stored, duplicates, sum(_apply_status(conn, r) for r in rows.statuses)


_HELD_SQL = ("SELECT id, hour, rows, windows, anomalies, counts FROM stats_hourly WHERE device_id = ? "
             "AND model_version IS ? AND layout = ? AND hour >= ? AND hour < ? ORDER BY hour")


def _roll_up(conn: sqlite3.Connection, new_stats: list[tuple[Any, ...]]) -> None:
    """Add new stats rows to their day's cumulative roll-ups (`hub.store.rollup.cumulate`: the roll-up of each
    row's hour and every later one of its day; read, add, write: SQLite has one writer at a time)."""
    for (device, version, layout), day, deltas in day_groups(batch_deltas(new_stats)):
        first, end = deltas[0][0], day + DAY_HOURS
        held = conn.execute(_HELD_SQL, (device, version, layout, first, end)).fetchall()
        base = None
        if not held or held[0][1] != first:
            before = conn.execute(_HELD_SQL.replace("ORDER BY hour", "ORDER BY hour DESC LIMIT 1"),
                                  (device, version, layout, day, first)).fetchone()
            base = None if before is None else blob_sums(*before[2:])
        ids = {r[1]: r[0] for r in held}
        for hour, sums, new in cumulate(base, [(r[1], blob_sums(*r[2:])) for r in held], deltas):
            if new:
                conn.execute("INSERT INTO stats_hourly (device_id, model_version, layout, hour, rows, windows, "
                             "anomalies, counts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (device, version, layout, hour, *sums_blob(sums)))
            else:
                conn.execute("UPDATE stats_hourly SET rows = ?, windows = ?, anomalies = ?, counts = ? WHERE id = ?",
                             (*sums_blob(sums), ids[hour]))


class IngestQueries(SqliteConnection):
    """`IngestStore` on SQLite (a mixin of `SqliteHubStore`)."""

    def ingest_batch(
        self, records: Sequence[IngestRecord], dead_letters: Sequence[DeadLetter] = ()
    ) -> IngestResult:
        rows = batch_rows(records)
        with self._write() as conn:
            stored, duplicates, status_applied = write_rows(conn, rows)
            if dead_letters:
                conn.executemany(_DEAD_LETTER_SQL, [_dead_letter_row(d) for d in dead_letters])
        return ingest_result(rows, stored, duplicates, status_applied, len(dead_letters))

    def add_dead_letter(
        self,
        topic: str,
        payload_prefix: bytes,
        reason: str,
        detail: str,
        ts: float,
        *,
        payload_size: int | None = None,
        device_id: str | None = None,
    ) -> None:
        letter = DeadLetter(topic, payload_prefix, reason, detail, ts, payload_size, device_id)
        with self._write() as conn:
            conn.execute(_DEAD_LETTER_SQL, _dead_letter_row(letter))

    def dead_letters(self, limit: int = 100, reason: str | None = None) -> list[DeadLetterRow]:
        where, params = ("WHERE reason = ?", [reason]) if reason is not None else ("", [])
        rows = self._read(f"SELECT * FROM dead_letters {where} ORDER BY id DESC LIMIT ?", [*params, limit])
        return [
            DeadLetterRow(r["id"], r["ts"], r["topic"], r["device_id"], r["reason"], r["detail"], bytes(r["payload"]),
                          r["payload_size"])
            for r in rows
        ]

    def dead_letter_counts(self) -> dict[str, int]:
        rows = self._read("SELECT reason, count(*) FROM dead_letters GROUP BY reason ORDER BY reason")
        return {r[0]: r[1] for r in rows}

    # -- reads of what was stored ----------------------------------------------------------------
    def prediction(self, trace_id: str) -> PredictionRow | None:
        rows = self._read("SELECT * FROM predictions WHERE trace_id = ?", [trace_id])
        return prediction_from_row(rows[0]) if rows else None

    def predictions(
        self,
        start: float,
        end: float,
        *,
        kind: PredictionKind | None = None,
        device_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[PredictionRow]:
        where: list[str] = ["ts >= ?", "ts < ?"]
        params: list[Any] = [start, end]
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        _in(where, params, "device_id", device_ids)
        return self._predictions(where, params, "ts, trace_id", -1 if limit is None else limit)

    def received_predictions(
        self,
        *,
        received_since: float,
        ts_since: float,
        kind: PredictionKind,
        reason: str | None = None,
        device_ids: Sequence[str] | None = None,
        limit: int,
    ) -> list[PredictionRow]:
        where: list[str] = ["ts >= ?", "received_at >= ?", "kind = ?"]
        params: list[Any] = [ts_since, received_since, kind]
        if reason is not None:
            where.append("reason = ?")
            params.append(reason)
        _in(where, params, "device_id", device_ids)
        return self._predictions(where, params, "ts DESC, trace_id", limit)

    def _predictions(self, where: list[str], params: list[Any], order: str, limit: int) -> list[PredictionRow]:
        sql = f"SELECT * FROM predictions WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
        return [prediction_from_row(r) for r in self._read(sql, [*params, limit])]

    def stats_between(self, start: float, end: float, device_ids: Sequence[str] | None = None) -> list[StatsRow]:
        where, params = ["period_end >= ?", "period_end < ?"], [start, end]
        _in(where, params, "device_id", device_ids)
        rows = self._read(f"SELECT * FROM stats WHERE {' AND '.join(where)} ORDER BY period_end, msg_id", params)
        return [
            StatsRow(
                r["msg_id"], r["device_id"], r["ts"], r["received_at"], r["model_version"], r["period_start"],
                r["period_end"], r["windows"], r["anomalies"], r["samples"], r["bad_readings"], r["bad_rows"],
                r["inference_errors"], r["nan_scores"], json.loads(r["feature_hist"]), json.loads(r["score_hist"]),
                r["latency_p50_ms"], r["latency_p99_ms"],
            )
            for r in rows
        ]

    def stats_sums(self, start: float, end: float) -> list[StatsSum]:
        return read_sums(self._read, "?", start, end)

    def annotations(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        device_id: str | None = None,
        trace_id: str | None = None,
        limit: int | None = None,
    ) -> list[AnnotationRow]:
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (("ts >= ?", since), ("ts < ?", until), ("device_id = ?", device_id),
                              ("trace_id = ?", trace_id)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = f"SELECT * FROM annotations {_where(where)} ORDER BY ts, annotation_id LIMIT ?"
        return [annotation_from_row(r) for r in self._read(sql, [*params, -1 if limit is None else limit])]

    def model_events(
        self, *, device_id: str | None = None, since: float | None = None, limit: int | None = None
    ) -> list[ModelEventRow]:
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (("device_id = ?", device_id), ("ts >= ?", since)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = f"SELECT * FROM model_events {_where(where)} ORDER BY ts, msg_id LIMIT ?"
        return [
            ModelEventRow(r["msg_id"], r["device_id"], r["ts"], r["received_at"], r["model_version"], r["event"],
                          r["version"], r["detail"], json.loads(r["metrics"]))
            for r in self._read(sql, [*params, -1 if limit is None else limit])
        ]

    def counts(self) -> StoreCounts:
        row = self._read(
            "SELECT (SELECT count(*) FROM predictions WHERE kind = 'anomaly'), "
            "(SELECT count(*) FROM predictions WHERE kind = 'sample'), (SELECT count(*) FROM stats), "
            "(SELECT count(*) FROM annotations), (SELECT count(*) FROM model_events), (SELECT count(*) FROM devices), "
            "(SELECT count(*) FROM devices WHERE online = 1), (SELECT count(*) FROM dead_letters), "
            "(SELECT count(*) FROM drift_reports), (SELECT count(*) FROM events)"
        )[0]
        return StoreCounts(*(int(v) for v in row))


def _apply_status(conn: sqlite3.Connection, record: IngestRecord) -> bool:
    """Update the registry from one status (the row exists: `_SEEN_SQL` ran first); False if stale."""
    m = record.message
    assert isinstance(m, Status)
    row = conn.execute(
        "SELECT online, status_ts, status_received FROM devices WHERE device_id = ?", (m.device_id,)
    ).fetchone()
    held = None if row is None or row[1] is None else Presence(bool(row[0]), row[1], row[2])
    online = m.state == "online"
    if not status_applies(held, online=online, ts=m.ts, received_at=record.received_at):
        return False
    new = applied(held, online=online, ts=m.ts, received_at=record.received_at)
    # Descriptive fields keep their value when a status omits them (a last will names nothing).
    conn.execute(
        "UPDATE devices SET online = ?, status_ts = ?, status_received = ?, "
        "model_version = coalesce(?, model_version), agent_version = coalesce(?, agent_version), "
        "shadow_version = coalesce(?, shadow_version), site = coalesce(?, site), "
        "asset_type = coalesce(?, asset_type) WHERE device_id = ?",
        (int(new.online), new.status_ts, new.received_at, m.model_version, m.agent_version, m.shadow_version,
         m.site, m.asset_type, m.device_id),
    )
    return True


def _dead_letter_row(d: DeadLetter) -> tuple[Any, ...]:
    size = len(d.payload) if d.payload_size is None else d.payload_size
    return (d.ts, d.topic, d.device_id, d.reason, d.detail[:DETAIL_CHARS],
            bytes(d.payload[:DEAD_LETTER_PAYLOAD_BYTES]), size)


def _in(where: list[str], params: list[Any], column: str, values: Sequence[str] | None) -> None:
    if values is not None:
        values = list(values)
        where.append(f"{column} IN ({', '.join('?' for _ in values)})" if values else "0")
        params.extend(values)


def _where(clauses: list[str]) -> str:
    return f"WHERE {' AND '.join(clauses)}" if clauses else ""
