"""Ingest on PostgreSQL: batches of device messages and dead letters in, and the stored telemetry back out.

A batch is one transaction: each table's rows go in with one ``executemany`` (psycopg pipelines it: one round
trip per batch, not per row) and ``ON CONFLICT DO NOTHING`` on the message keys the SQLite store uses, so a
redelivery is stored once; then the devices' activity, their statuses (presence ordering) and dead letters.
Rows are written in key order so two workers writing overlapping batches wait for each other, never deadlock.
A batch with anomalies holds the `ANOMALY_ORDER` lock, so ``predictions.seq`` order is commit order for them
(what the incident pass's cursor relies on, as SQLite's rowid does).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import psycopg

from hub.store.postgres.common import (
    ANNOTATION_COLUMNS,
    DETAIL_CHARS,
    PREDICTION_COLUMNS,
    annotation_from_row,
    decoded,
    prediction_from_row,
)
from hub.store.postgres.connection import PostgresConnection, lock
from hub.store.presence import Presence, applied, status_applies
from hub.store.rollup import DAY_HOURS, Sums, batch_deltas, blob_sums, cumulate, day_groups, read_sums, sums_blob
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
from hub.store.sqlite.windows import STORE_WINDOW
from shared.messages import Status

ANOMALY_ORDER = "predictions.anomaly_order"
"""The advisory lock a transaction writing anomalies holds, so their seq order is their commit order."""


def _values(n: int) -> str:
    return f"VALUES ({', '.join(['%s'] * n)})"


_PREDICTION_SQL = (
    "INSERT INTO predictions (trace_id, msg_id, kind, device_id, ts, received_at, model_version, unit, "
    f"window_start, window_end, score, threshold, decision, reason, n_features, features) {_values(16)} "
    "ON CONFLICT (trace_id) DO NOTHING"
)
_STATS_SQL = (
    "INSERT INTO stats (msg_id, device_id, ts, received_at, model_version, period_start, period_end, "
    "windows, anomalies, samples, bad_readings, bad_rows, inference_errors, nan_scores, feature_hist, score_hist, "
    f"latency_p50_ms, latency_p99_ms, layout, counts) {_values(20)} ON CONFLICT (msg_id) DO NOTHING RETURNING msg_id"
)
_GROUPS = ("unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[]) "
           "WITH ORDINALITY AS k(d, v, l, lo, hi, n)")
_GROUP_MATCH = ("h.device_id = k.d AND h.model_version IS NOT DISTINCT FROM k.v AND h.layout = k.l "
                "AND h.hour >= k.lo AND h.hour < k.hi")
# each group's roll-ups from its first delta's hour to the end of its day; and its latest one before that hour
_HELD_SQL = (f"SELECT k.n, h.id, h.hour, h.rows, h.windows, h.anomalies, h.counts FROM {_GROUPS} "
             f"JOIN stats_hourly h ON {_GROUP_MATCH} ORDER BY k.n, h.hour")
_BASE_SQL = (f"SELECT DISTINCT ON (k.n) k.n, h.rows, h.windows, h.anomalies, h.counts FROM {_GROUPS} "
             f"JOIN stats_hourly h ON {_GROUP_MATCH} ORDER BY k.n, h.hour DESC")
ROLLUP_LOCKS = 0x726F6C6C  # the advisory lock class ('roll') of the (device, version, layout, day) roll-up locks
_ANNOTATION_SQL = (
    f"INSERT INTO annotations ({ANNOTATION_COLUMNS}) {_values(15)} ON CONFLICT (annotation_id) DO NOTHING"
)
_MODEL_EVENT_SQL = (
    "INSERT INTO model_events (msg_id, device_id, ts, received_at, model_version, event, version, detail, "
    f"metrics) {_values(9)} ON CONFLICT (msg_id) DO NOTHING"
)
_DEAD_LETTER_SQL = (
    f"INSERT INTO dead_letters (ts, topic, device_id, reason, detail, payload, payload_size) {_values(7)}"
)
# Activity: the device exists from its first message; last_seen (hub clock) and last_ts only move forward.
_SEEN_SQL = (
    "INSERT INTO devices (device_id, online, first_seen, last_seen, last_ts) VALUES (%s, 0, %s, %s, %s) "
    "ON CONFLICT (device_id) DO UPDATE SET "
    "last_seen = greatest(coalesce(devices.last_seen, excluded.last_seen), excluded.last_seen), "
    "last_ts = greatest(coalesce(devices.last_ts, excluded.last_ts), excluded.last_ts)"
)


def write_rows(conn: psycopg.Connection[Any], rows: BatchRows) -> tuple[dict[str, int], dict[str, int], int]:
    """Store a batch's rows inside the caller's transaction: (stored, duplicates) by kind, statuses applied.

    The one write path of device messages and annotations: `ingest_batch` and an incident's verdict use it.
    """
    if rows.anomalies:
        lock(conn, ANOMALY_ORDER)
    stored: dict[str, int] = {}
    duplicates: dict[str, int] = {}
    with conn.cursor() as cur:
        if rows.stats:  # RETURNING says which rows were new: only those go into the roll-ups
            ordered = sorted(rows.stats, key=itemgetter(0))
            returned = {r[0] for r in _returned(cur, _STATS_SQL, ordered)}
            first: dict[str, tuple[Any, ...]] = {}
            for r in ordered:
                first.setdefault(r[0], r)  # a msg_id twice in one batch: its first row is the one stored
            new = [r for msg_id, r in first.items() if msg_id in returned]
            stored["stats"], duplicates["stats"] = len(new), len(rows.stats) - len(new)
            _roll_up(cur, new)
        for kind, sql, table_rows in (
            ("anomaly", _PREDICTION_SQL, rows.anomalies),
            ("sample", _PREDICTION_SQL, rows.samples),
            ("annotation", _ANNOTATION_SQL, rows.annotations),
            ("model_event", _MODEL_EVENT_SQL, rows.model_events),
            ("window", STORE_WINDOW.format(p="%s"), rows.windows),
        ):
            if table_rows:
                cur.executemany(sql, sorted(table_rows, key=itemgetter(0)))  # rowcount: the sum over the rows
                stored[kind] = cur.rowcount
                duplicates[kind] = len(table_rows) - cur.rowcount
        if rows.seen:
            cur.executemany(_SEEN_SQL, [(d, at, at, ts) for d, (at, ts) in sorted(rows.seen.items())])
    return stored, duplicates, sum(_apply_status(conn, r) for r in rows.statuses)


def _returned(cur: psycopg.Cursor[Any], sql: str, rows: Sequence[tuple[Any, ...]]) -> list[Any]:
    """What an ``executemany`` of a ``RETURNING`` statement returned, over all its rows (pipelined)."""
    cur.executemany(sql, rows, returning=True)
    out: list[Any] = []
    while True:
        out.extend(cur.fetchall())
        if not cur.nextset():
            return out


def _roll_up(cur: psycopg.Cursor[Any], new_stats: list[tuple[Any, ...]]) -> None:
    """Add new stats rows to their day's cumulative roll-ups (`hub.store.rollup.cumulate`).

    A row adds to its hour's roll-up and every later one of its day, and a new hour's roll-up starts from the
    day's latest before it, so a writer holds each (device, version, layout, day) it touches: a transaction
    advisory lock per group, taken in ascending lock-id order (two workers wait for each other, never deadlock;
    a hash collision only makes two groups wait for each other). Then one read of the held roll-ups, one of the
    bases where a new hour starts, and the inserts and updates, each one pipelined statement."""
    groups = day_groups(batch_deltas(new_stats))
    if not groups:
        return
    cur.execute("SELECT pg_advisory_xact_lock(%s::int, x) FROM unnest(%s::int[]) AS x",
                (ROLLUP_LOCKS, sorted({_lock_id(key, day) for key, day, _ in groups})))
    cols: list[list[Any]] = [[key[i] for key, _, _ in groups] for i in range(3)]
    firsts = [deltas[0][0] for _, _, deltas in groups]
    held: dict[int, list[tuple[int, int, Sums]]] = {}
    for n, row_id, hour, rows, windows, anomalies, blob in cur.execute(
            _HELD_SQL, [*cols, firsts, [day + DAY_HOURS for _, day, _ in groups]]).fetchall():
        held.setdefault(n - 1, []).append((row_id, hour, blob_sums(rows, windows, anomalies, blob)))
    need = [i for i, first in enumerate(firsts) if not held.get(i) or held[i][0][1] != first]
    bases: dict[int, Sums] = {}
    if need:
        picked = [[col[i] for i in need] for col in cols]
        for n, rows, windows, anomalies, blob in cur.execute(
                _BASE_SQL, [*picked, [groups[i][1] for i in need], [firsts[i] for i in need]]).fetchall():
            bases[need[n - 1]] = blob_sums(rows, windows, anomalies, blob)
    inserts, updates = [], []
    for i, (key, _, deltas) in enumerate(groups):
        mine = held.get(i, [])
        ids = {hour: row_id for row_id, hour, _ in mine}
        for hour, sums, new in cumulate(bases.get(i), [(hour, v) for _, hour, v in mine], deltas):
            if new:
                inserts.append((*key, hour, *sums_blob(sums)))
            else:
                updates.append((*sums_blob(sums), ids[hour]))
    if inserts:
        cur.executemany("INSERT INTO stats_hourly (device_id, model_version, layout, hour, rows, windows, anomalies, "
                        f"counts) {_values(8)}", inserts)
    if updates:
        cur.executemany("UPDATE stats_hourly SET rows = %s, windows = %s, anomalies = %s, counts = %s WHERE id = %s",
                        updates)


def _lock_id(key: tuple[str, str | None, str], day: int) -> int:
    """A roll-up group's advisory lock id (signed 32 bits; stable across processes, unlike `hash`)."""
    digest = hashlib.blake2b(repr((*key, day)).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little", signed=True)


class IngestQueries(PostgresConnection):
    """`IngestStore` on PostgreSQL (a mixin of `PostgresHubStore`)."""

    def ingest_batch(
        self, records: Sequence[IngestRecord], dead_letters: Sequence[DeadLetter] = ()
    ) -> IngestResult:
        rows = batch_rows(records)
        with self._write() as conn:
            stored, duplicates, status_applied = write_rows(conn, rows)
            if dead_letters:
                conn.cursor().executemany(_DEAD_LETTER_SQL, [_dead_letter_row(d) for d in dead_letters])
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
        where, params = ("WHERE reason = %s", [reason]) if reason is not None else ("", [])
        rows = self._read(
            "SELECT id, ts, topic, device_id, reason, detail, payload, payload_size FROM dead_letters "
            f"{where} ORDER BY id DESC LIMIT %s", [*params, limit])
        return [DeadLetterRow(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]), r[7]) for r in rows]

    def dead_letter_counts(self) -> dict[str, int]:
        rows = self._read("SELECT reason, count(*) FROM dead_letters GROUP BY reason ORDER BY reason")
        return {r[0]: int(r[1]) for r in rows}

    # -- reads of what was stored ----------------------------------------------------------------
    def prediction(self, trace_id: str) -> PredictionRow | None:
        rows = self._read(f"SELECT {PREDICTION_COLUMNS} FROM predictions WHERE trace_id = %s", [trace_id])
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
        where: list[str] = ["ts >= %s", "ts < %s"]
        params: list[Any] = [start, end]
        if kind is not None:
            where.append("kind = %s")
            params.append(kind)
        any_of(where, params, "device_id", device_ids)
        return self._predictions(where, params, "ts, trace_id", limit)

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
        where: list[str] = ["ts >= %s", "received_at >= %s", "kind = %s"]
        params: list[Any] = [ts_since, received_since, kind]
        if reason is not None:
            where.append("reason = %s")
            params.append(reason)
        any_of(where, params, "device_id", device_ids)
        return self._predictions(where, params, "ts DESC, trace_id", limit)

    def _predictions(self, where: list[str], params: list[Any], order: str, limit: int | None) -> list[PredictionRow]:
        sql = f"SELECT {PREDICTION_COLUMNS} FROM predictions WHERE {' AND '.join(where)} ORDER BY {order} LIMIT %s"
        return [prediction_from_row(r) for r in self._read(sql, [*params, limit])]

    def stats_between(self, start: float, end: float, device_ids: Sequence[str] | None = None) -> list[StatsRow]:
        where, params = ["period_end >= %s", "period_end < %s"], [start, end]
        any_of(where, params, "device_id", device_ids)
        rows = self._read(
            "SELECT msg_id, device_id, ts, received_at, model_version, period_start, period_end, windows, anomalies, "
            "samples, bad_readings, bad_rows, inference_errors, nan_scores, feature_hist, score_hist, "
            f"latency_p50_ms, latency_p99_ms FROM stats WHERE {' AND '.join(where)} ORDER BY period_end, msg_id",
            params)
        return [StatsRow(*decoded(r, _14=json.loads, _15=json.loads)) for r in rows]

    def stats_sums(self, start: float, end: float) -> list[StatsSum]:
        return read_sums(self._read, "%s", start, end)

    def annotations(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        device_id: str | None = None,
        trace_id: str | None = None,
        limit: int | None = None,
    ) -> list[AnnotationRow]:
        where, params = conditions(("ts >= %s", since), ("ts < %s", until), ("device_id = %s", device_id),
                                   ("trace_id = %s", trace_id))
        sql = f"SELECT {ANNOTATION_COLUMNS} FROM annotations {where} ORDER BY ts, annotation_id LIMIT %s"
        return [annotation_from_row(r) for r in self._read(sql, [*params, limit])]

    def model_events(
        self, *, device_id: str | None = None, since: float | None = None, limit: int | None = None
    ) -> list[ModelEventRow]:
        where, params = conditions(("device_id = %s", device_id), ("ts >= %s", since))
        sql = (f"SELECT msg_id, device_id, ts, received_at, model_version, event, version, detail, metrics "
               f"FROM model_events {where} ORDER BY ts, msg_id LIMIT %s")
        return [ModelEventRow(*decoded(r, _8=json.loads)) for r in self._read(sql, [*params, limit])]

    def counts(self) -> StoreCounts:
        row = self._read(
            "SELECT (SELECT count(*) FROM predictions WHERE kind = 'anomaly'), "
            "(SELECT count(*) FROM predictions WHERE kind = 'sample'), (SELECT count(*) FROM stats), "
            "(SELECT count(*) FROM annotations), (SELECT count(*) FROM model_events), (SELECT count(*) FROM devices), "
            "(SELECT count(*) FROM devices WHERE online = 1), (SELECT count(*) FROM dead_letters), "
            "(SELECT count(*) FROM drift_reports), (SELECT count(*) FROM events)"
        )[0]
        return StoreCounts(*(int(v) for v in row))


def _apply_status(conn: psycopg.Connection[Any], record: IngestRecord) -> bool:
    """Update the registry from one status (the row exists and is locked: `_SEEN_SQL` ran first); False if stale."""
    m = record.message
    assert isinstance(m, Status)
    row = conn.execute(
        "SELECT online, status_ts, status_received FROM devices WHERE device_id = %s FOR UPDATE", (m.device_id,)
    ).fetchone()
    held = None if row is None or row[1] is None else Presence(bool(row[0]), row[1], row[2])
    online = m.state == "online"
    if not status_applies(held, online=online, ts=m.ts, received_at=record.received_at):
        return False
    new = applied(held, online=online, ts=m.ts, received_at=record.received_at)
    # Descriptive fields keep their value when a status omits them (a last will names nothing).
    conn.execute(
        "UPDATE devices SET online = %s, status_ts = %s, status_received = %s, "
        "model_version = coalesce(%s, model_version), agent_version = coalesce(%s, agent_version), "
        "shadow_version = coalesce(%s, shadow_version), site = coalesce(%s, site), "
        "asset_type = coalesce(%s, asset_type) WHERE device_id = %s",
        (int(new.online), new.status_ts, new.received_at, m.model_version, m.agent_version, m.shadow_version,
         m.site, m.asset_type, m.device_id),
    )
    return True


def _dead_letter_row(d: DeadLetter) -> tuple[Any, ...]:
    size = len(d.payload) if d.payload_size is None else d.payload_size
    return (d.ts, _text(d.topic), d.device_id and _text(d.device_id), d.reason, _text(d.detail[:DETAIL_CHARS]),
            bytes(d.payload[:DEAD_LETTER_PAYLOAD_BYTES]), size)


def _text(value: str) -> str:
    """PostgreSQL text cannot hold NUL (SQLite's can): a refused message's topic or detail shows it escaped."""
    return value.replace("\x00", "\\x00")


def any_of(where: list[str], params: list[Any], column: str, values: Sequence[str] | None) -> None:
    """Add ``column = ANY(values)`` (nothing matches an empty list; None: no condition)."""
    if values is not None:
        where.append(f"{column} = ANY(%s)")
        params.append(list(values))


def conditions(*pairs: tuple[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE clause of the conditions whose value is not None, and their parameters."""
    used = [(clause, value) for clause, value in pairs if value is not None]
    return (f"WHERE {' AND '.join(c for c, _ in used)}" if used else "", [v for _, v in used])
