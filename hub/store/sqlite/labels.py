"""Labels on SQLite: annotations joined to predictions, the labeling queue, and content-addressed label sets."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from hub.store.rows import (
    AnnotationRow,
    ExclusionRow,
    LabelItemRow,
    LabelSetRow,
    MissingTrace,
    PredictionRow,
    QueueReason,
)
from hub.store.sqlite.common import DETAIL_CHARS, annotation_from_row, prediction_from_row
from hub.store.sqlite.connection import SqliteConnection
from shared.errors import StoreError

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


class LabelQueries(SqliteConnection):
    """`LabelStore` on SQLite (a mixin of `SqliteHubStore`)."""

    def annotation(self, annotation_id: str) -> AnnotationRow | None:
        rows = self._read("SELECT * FROM annotations WHERE annotation_id = ?", [annotation_id])
        return annotation_from_row(rows[0]) if rows else None

    def annotations_covering(self, device_id: str, ts: float) -> list[AnnotationRow]:
        rows = self._read(
            "SELECT * FROM annotations WHERE device_id = ? AND trace_id IS NULL AND start_ts <= ? AND end_ts >= ? "
            "ORDER BY ts, annotation_id",
            [device_id, ts, ts],
        )
        return [annotation_from_row(r) for r in rows]

    def predictions_by_trace(self, trace_ids: Sequence[str]) -> list[PredictionRow]:
        unique = sorted(set(trace_ids))
        found: list[PredictionRow] = []
        for i in range(0, len(unique), _IN_CHUNK):
            chunk = unique[i : i + _IN_CHUNK]
            sql = f"SELECT * FROM predictions WHERE trace_id IN ({', '.join('?' for _ in chunk)})"
            found.extend(prediction_from_row(r) for r in self._read(sql, chunk))
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
        return [prediction_from_row(r) for r in self._read(sql, [*params, limit])]

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
                [(label_set_id, e.annotation_id, e.trace_id, e.reason, e.detail[:DETAIL_CHARS]) for e in exclusions],
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


def _label_set(r: sqlite3.Row) -> LabelSetRow:
    return LabelSetRow(r["id"], r["fingerprint"], r["created_ts"], r["validated_ts"], json.loads(r["summary"]))
