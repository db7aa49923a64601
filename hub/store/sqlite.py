"""`SqliteHubStore`: the hub store on one SQLite file (sqlite-utils migrations, WAL, explicit transactions).

Each thread gets its own connection (SQLite connections are not shared across threads); writers
serialise on ``BEGIN IMMEDIATE`` with a busy timeout, readers never block in WAL mode. Every write is
one transaction, so a kill -9 leaves a batch either fully stored or not at all.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from hub.store.base import (
    DEAD_LETTER_PAYLOAD_BYTES,
    DRIFT_EVENT,
    AnnotationRow,
    DeadLetter,
    DeadLetterRow,
    Device,
    DriftReportRow,
    EventRow,
    ExclusionRow,
    IngestRecord,
    IngestResult,
    LabelItemRow,
    LabelSetRow,
    MissingTrace,
    ModelEventRow,
    PredictionKind,
    PredictionRow,
    QueueReason,
    StatsRow,
    StoreCounts,
)
from hub.store.presence import Presence, applied, status_applies
from hub.store.registry import RegistryQueries
from hub.store.rollouts import RolloutQueries
from hub.store.rows import batch_rows, features_from_blob
from hub.store.schema import migrations
from hub.store.training import TrainingQueries
from shared.errors import StoreError
from shared.messages import Status

log = logging.getLogger(__name__)

_DETAIL_CHARS = 2000

_PREDICTION_SQL = (
    "INSERT OR IGNORE INTO predictions (trace_id, msg_id, kind, device_id, ts, received_at, model_version, unit, "
    "window_start, window_end, score, threshold, decision, reason, n_features, features) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_STATS_SQL = (
    "INSERT OR IGNORE INTO stats (msg_id, device_id, ts, received_at, model_version, period_start, period_end, "
    "windows, anomalies, samples, bad_readings, bad_rows, inference_errors, nan_scores, feature_hist, score_hist, "
    "latency_p50_ms, latency_p99_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
_DEVICE_COLUMNS = (
    "device_id, online, last_seen, model_version, agent_version, site, asset_type, coalesce(cohort, site), "
    "shadow_version, status_ts, last_ts, first_seen"
)


class SqliteHubStore(RegistryQueries, RolloutQueries, TrainingQueries):
    """The hub store in one SQLite file. Thread-safe: one connection per thread, opened on first use."""

    def __init__(self, path: Path | str, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory of hub database {self.path}: {exc.strerror}") from None
        db = Database(self._conn())
        for attempt in range(3):
            try:
                migrations.apply(db)
                break
            except sqlite3.DatabaseError as exc:  # e.g. another process migrating the same file right now
                if attempt == 2:
                    raise StoreError(f"cannot migrate hub database {self.path}: {exc}") from exc
                time.sleep(0.1)

    # -- connections -----------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise StoreError(f"hub database {self.path} is closed")
        try:
            # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE … COMMIT) in `_write`.
            conn = sqlite3.connect(
                str(self.path), timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL never corrupts
            conn.execute("PRAGMA foreign_keys=ON")
            conn.row_factory = sqlite3.Row
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open hub database {self.path}: {exc}") from exc
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    def close(self) -> None:
        """Close every thread's connection; the store cannot be used afterwards."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on error; database errors become StoreError."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"hub database {self.path}: {exc}") from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"hub database {self.path}: {exc}") from exc
            raise

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return list(self._conn().execute(sql, params).fetchall())
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"hub database {self.path}: {exc}") from exc

    # -- ingest ----------------------------------------------------------------------------------
    def ingest_batch(
        self, records: Sequence[IngestRecord], dead_letters: Sequence[DeadLetter] = ()
    ) -> IngestResult:
        rows = batch_rows(records)
        stored: dict[str, int] = {}
        duplicates: dict[str, int] = {}
        with self._write() as conn:
            for kind, sql, table_rows in (
                ("anomaly", _PREDICTION_SQL, rows.anomalies),
                ("sample", _PREDICTION_SQL, rows.samples),
                ("stats", _STATS_SQL, rows.stats),
                ("annotation", _ANNOTATION_SQL, rows.annotations),
                ("model_event", _MODEL_EVENT_SQL, rows.model_events),
            ):
                if table_rows:
                    inserted = conn.executemany(sql, table_rows).rowcount
                    stored[kind] = inserted
                    duplicates[kind] = len(table_rows) - inserted
            if rows.seen:
                conn.executemany(_SEEN_SQL, [(d, at, at, ts) for d, (at, ts) in rows.seen.items()])
            status_applied = sum(self._apply_status(conn, r) for r in rows.statuses)
            if dead_letters:
                conn.executemany(_DEAD_LETTER_SQL, [_dead_letter_row(d) for d in dead_letters])
        if status_applied:
            stored["status"] = status_applied
        if len(rows.statuses) > status_applied:
            duplicates["status"] = len(rows.statuses) - status_applied
        return IngestResult(
            stored={k: v for k, v in stored.items() if v},
            duplicates={k: v for k, v in duplicates.items() if v},
            status_applied=status_applied,
            status_ignored=len(rows.statuses) - status_applied,
            dead_letters=len(dead_letters),
            rejected=rows.rejected,
        )

    @staticmethod
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

    # -- devices ---------------------------------------------------------------------------------
    def devices(self) -> list[Device]:
        return [_device(r) for r in self._read(f"SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY device_id")]

    def device(self, device_id: str) -> Device | None:
        rows = self._read(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE device_id = ?", [device_id])
        return _device(rows[0]) if rows else None

    def set_cohort(self, device_id: str, cohort: str | None) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO devices (device_id, online, cohort) VALUES (?, 0, ?) "
                "ON CONFLICT(device_id) DO UPDATE SET cohort = excluded.cohort",
                (device_id, cohort),
            )

    # -- reads -----------------------------------------------------------------------------------
    def prediction(self, trace_id: str) -> PredictionRow | None:
        rows = self._read("SELECT * FROM predictions WHERE trace_id = ?", [trace_id])
        return _prediction(rows[0]) if rows else None

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
        sql = f"SELECT * FROM predictions WHERE {' AND '.join(where)} ORDER BY ts, trace_id LIMIT ?"
        return [_prediction(r) for r in self._read(sql, [*params, -1 if limit is None else limit])]

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
        return [
            AnnotationRow(
                r["annotation_id"], r["msg_id"], r["device_id"], r["ts"], r["received_at"], r["model_version"],
                r["trace_id"], r["start_ts"], r["end_ts"], r["label"], r["fault_type"], r["technician_id"],
                r["confidence"], r["signal"], r["note"],
            )
            for r in self._read(sql, [*params, -1 if limit is None else limit])
        ]

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

    # -- drift and events ------------------------------------------------------------------------
    def save_drift_report(self, report: Mapping[str, Any], scope: str, verdict: str, ts: float) -> int:
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO drift_reports (ts, scope, verdict, report) VALUES (?, ?, ?, ?)",
                (ts, scope, verdict, json.dumps(report, allow_nan=False)),
            )
            report_id = int(cur.lastrowid or 0)
            if verdict == "drift":
                payload = {"report_id": report_id, "scope": scope, "reason": report.get("reason"),
                           "drifted_features": report.get("drifted_features", [])}
                conn.execute("INSERT INTO events (ts, kind, payload) VALUES (?, ?, ?)",
                             (ts, DRIFT_EVENT, json.dumps(payload, allow_nan=False)))
        return report_id

    def drift_reports(self, limit: int = 100, scope: str | None = None) -> list[DriftReportRow]:
        where, params = ("WHERE scope = ?", [scope]) if scope is not None else ("", [])
        rows = self._read(f"SELECT * FROM drift_reports {where} ORDER BY id DESC LIMIT ?", [*params, limit])
        return [DriftReportRow(r["id"], r["ts"], r["scope"], r["verdict"], json.loads(r["report"])) for r in rows]

    def record_event(self, kind: str, payload: Mapping[str, Any], ts: float | None = None) -> int:
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO events (ts, kind, payload) VALUES (?, ?, ?)",
                (time.time() if ts is None else ts, kind, json.dumps(payload, allow_nan=False)),
            )
        return int(cur.lastrowid or 0)

    def events(self, *, kind: str | None = None, since_id: int = 0, limit: int = 100) -> list[EventRow]:
        where: list[str] = ["id > ?"]
        params: list[Any] = [since_id]
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        rows = self._read(f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY id LIMIT ?", [*params, limit])
        return [EventRow(r["id"], r["ts"], r["kind"], json.loads(r["payload"])) for r in rows]

    # -- labels (hub API) ------------------------------------------------------------------------
    def annotation(self, annotation_id: str) -> AnnotationRow | None:
        rows = self._read("SELECT * FROM annotations WHERE annotation_id = ?", [annotation_id])
        return _annotation(rows[0]) if rows else None

    def annotations_covering(self, device_id: str, ts: float) -> list[AnnotationRow]:
        rows = self._read(
            "SELECT * FROM annotations WHERE device_id = ? AND trace_id IS NULL AND start_ts <= ? AND end_ts >= ? "
            "ORDER BY ts, annotation_id",
            [device_id, ts, ts],
        )
        return [_annotation(r) for r in rows]

    def predictions_by_trace(self, trace_ids: Sequence[str]) -> list[PredictionRow]:
        unique = sorted(set(trace_ids))
        found: list[PredictionRow] = []
        for i in range(0, len(unique), _IN_CHUNK):
            chunk = unique[i : i + _IN_CHUNK]
            sql = f"SELECT * FROM predictions WHERE trace_id IN ({', '.join('?' for _ in chunk)})"
            found.extend(_prediction(r) for r in self._read(sql, chunk))
        return sorted(found, key=lambda p: p.trace_id)

    def unlabelled_predictions(
        self, reason: QueueReason, *, since: float | None = None, device_id: str | None = None, limit: int = 100
    ) -> list[PredictionRow]:
        group, order = _QUEUE[reason]
        where = [group, *_UNANNOTATED]
        params: list[Any] = []
        for clause, value in (("p.ts >= ?", since), ("p.device_id = ?", device_id)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = f"SELECT p.* FROM predictions p WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
        return [_prediction(r) for r in self._read(sql, [*params, limit])]

    def missing_traces(
        self, *, since: float | None = None, device_id: str | None = None, limit: int | None = None
    ) -> list[MissingTrace]:
        where = ["a.trace_id IS NOT NULL", "NOT EXISTS (SELECT 1 FROM predictions p WHERE p.trace_id = a.trace_id)"]
        params: list[Any] = []
        for clause, value in (("a.ts >= ?", since), ("a.device_id = ?", device_id)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = (
            f"SELECT a.trace_id, a.device_id, count(*), min(a.ts), max(a.ts) FROM annotations a "
            f"WHERE {' AND '.join(where)} GROUP BY a.trace_id, a.device_id ORDER BY min(a.ts), a.trace_id LIMIT ?"
        )
        rows = self._read(sql, [*params, -1 if limit is None else limit])
        return [MissingTrace(r[0], r[1], int(r[2]), float(r[3]), float(r[4])) for r in rows]

    def save_label_set(
        self,
        summary: Mapping[str, Any],
        items: Sequence[LabelItemRow],
        exclusions: Sequence[ExclusionRow],
        *,
        ts: float,
    ) -> str:
        label_set_id, fingerprint = str(summary["id"]), str(summary["fingerprint"])
        with self._write() as conn:
            held = conn.execute("SELECT fingerprint FROM label_sets WHERE id = ?", (label_set_id,)).fetchone()
            if held is not None and held[0] != fingerprint:
                raise StoreError(f"label set {label_set_id} is stored with another fingerprint ({held[0]})")
            conn.execute(
                "INSERT INTO label_sets (id, fingerprint, created_ts, validated_ts, summary) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET validated_ts = excluded.validated_ts, summary = excluded.summary",
                (label_set_id, fingerprint, ts, ts, json.dumps(summary, allow_nan=False)),
            )
            conn.execute("DELETE FROM label_set_items WHERE label_set_id = ?", (label_set_id,))
            conn.execute("DELETE FROM label_exclusions WHERE label_set_id = ?", (label_set_id,))
            conn.executemany(
                "INSERT INTO label_set_items (label_set_id, trace_id, device_id, label, weight, confidence, "
                "n_annotations, cohort, model_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(label_set_id, i.trace_id, i.device_id, i.label, i.weight, i.confidence, i.n_annotations, i.cohort,
                  i.model_version) for i in items],
            )
            conn.executemany(
                "INSERT INTO label_exclusions (label_set_id, annotation_id, trace_id, reason, detail) "
                "VALUES (?, ?, ?, ?, ?)",
                [(label_set_id, e.annotation_id, e.trace_id, e.reason, e.detail[:_DETAIL_CHARS]) for e in exclusions],
            )
        return label_set_id

    def label_sets(self, limit: int = 100) -> list[LabelSetRow]:
        rows = self._read("SELECT * FROM label_sets ORDER BY validated_ts DESC, id LIMIT ?", [limit])
        return [_label_set(r) for r in rows]

    def label_set(self, label_set_id: str) -> LabelSetRow | None:
        rows = self._read("SELECT * FROM label_sets WHERE id = ?", [label_set_id])
        return _label_set(rows[0]) if rows else None

    def label_set_items(
        self, label_set_id: str, *, trace_id: str | None = None, limit: int | None = None
    ) -> list[LabelItemRow]:
        where, params = ["label_set_id = ?"], [label_set_id]
        if trace_id is not None:
            where.append("trace_id = ?")
            params.append(trace_id)
        sql = f"SELECT * FROM label_set_items WHERE {' AND '.join(where)} ORDER BY trace_id LIMIT ?"
        return [
            LabelItemRow(r["trace_id"], r["device_id"], r["label"], r["weight"], r["confidence"], r["n_annotations"],
                         r["cohort"], r["model_version"])
            for r in self._read(sql, [*params, -1 if limit is None else limit])
        ]

    def label_exclusions(
        self,
        label_set_id: str,
        *,
        trace_id: str | None = None,
        reason: str | None = None,
        limit: int | None = None,
    ) -> list[ExclusionRow]:
        where, params = ["label_set_id = ?"], [label_set_id]
        for clause, value in (("trace_id = ?", trace_id), ("reason = ?", reason)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = (
            f"SELECT * FROM label_exclusions WHERE {' AND '.join(where)} "
            "ORDER BY annotation_id, coalesce(trace_id, ''), reason LIMIT ?"
        )
        return [
            ExclusionRow(r["annotation_id"], r["trace_id"], r["reason"], r["detail"])
            for r in self._read(sql, [*params, -1 if limit is None else limit])
        ]

    # -- maintenance -----------------------------------------------------------------------------
    def integrity_ok(self) -> bool:
        return bool(self._read("PRAGMA integrity_check")[0][0] == "ok")

    def __repr__(self) -> str:
        return f"SqliteHubStore({str(self.path)!r})"


def _dead_letter_row(d: DeadLetter) -> tuple[Any, ...]:
    size = len(d.payload) if d.payload_size is None else d.payload_size
    return (d.ts, d.topic, d.device_id, d.reason, d.detail[:_DETAIL_CHARS],
            bytes(d.payload[:DEAD_LETTER_PAYLOAD_BYTES]), size)


def _device(r: sqlite3.Row) -> Device:
    return Device(
        device_id=r[0], online=bool(r[1]), last_seen=r[2], model_version=r[3], agent_version=r[4], site=r[5],
        asset_type=r[6], cohort=r[7], shadow_version=r[8], status_ts=r[9], last_ts=r[10], first_seen=r[11],
    )


def _prediction(r: sqlite3.Row) -> PredictionRow:
    return PredictionRow(
        r["trace_id"], r["msg_id"], r["kind"], r["device_id"], r["ts"], r["received_at"], r["model_version"],
        r["unit"], r["window_start"], r["window_end"], r["score"], r["threshold"], bool(r["decision"]), r["reason"],
        features_from_blob(r["features"]),
    )


def _in(where: list[str], params: list[Any], column: str, values: Sequence[str] | None) -> None:
    if values is not None:
        values = list(values)
        where.append(f"{column} IN ({', '.join('?' for _ in values)})" if values else "0")
        params.extend(values)


_IN_CHUNK = 500  # bound parameters per IN (...) query, well below SQLite's limit
# The labeling queue: which predictions each group holds, and its order (hub.labels.service.prioritise).
_QUEUE: dict[str, tuple[str, str]] = {
    "anomaly": ("p.kind = 'anomaly'", "p.score DESC, p.ts DESC, p.trace_id"),
    "low_confidence": ("p.kind = 'sample' AND p.reason = 'low_confidence'",
                       "abs(p.score - p.threshold), p.ts DESC, p.trace_id"),
    "random": ("p.kind = 'sample' AND p.reason = 'random'", "p.ts DESC, p.trace_id"),
}
_UNANNOTATED = (
    "NOT EXISTS (SELECT 1 FROM annotations a WHERE a.trace_id = p.trace_id)",
    "NOT EXISTS (SELECT 1 FROM annotations a WHERE a.trace_id IS NULL AND a.device_id = p.device_id "
    "AND a.start_ts <= p.ts AND a.end_ts >= p.ts)",
)


def _annotation(r: sqlite3.Row) -> AnnotationRow:
    return AnnotationRow(
        r["annotation_id"], r["msg_id"], r["device_id"], r["ts"], r["received_at"], r["model_version"], r["trace_id"],
        r["start_ts"], r["end_ts"], r["label"], r["fault_type"], r["technician_id"], r["confidence"], r["signal"],
        r["note"],
    )


def _label_set(r: sqlite3.Row) -> LabelSetRow:
    return LabelSetRow(r["id"], r["fingerprint"], r["created_ts"], r["validated_ts"], json.loads(r["summary"]))


def _where(clauses: list[str]) -> str:
    return f"WHERE {' AND '.join(clauses)}" if clauses else ""
