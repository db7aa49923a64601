"""Labels on PostgreSQL: annotations joined to predictions, the labeling queue, and content-addressed label sets."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from hub.store.postgres.common import (
    ANNOTATION_COLUMNS,
    DETAIL_CHARS,
    PREDICTION_COLUMNS,
    annotation_from_row,
    decoded,
    prediction_from_row,
    prefixed,
)
from hub.store.postgres.connection import PostgresConnection, Row
from hub.store.postgres.ingest import conditions
from hub.store.rows import (
    AnnotationRow,
    ExclusionRow,
    LabelItemRow,
    LabelSetRow,
    MissingTrace,
    PredictionRow,
    QueueReason,
)
from shared.errors import StoreError

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
_ITEM_COLUMNS = "trace_id, device_id, label, weight, confidence, n_annotations, cohort, model_version"


class LabelQueries(PostgresConnection):
    """`LabelStore` on PostgreSQL (a mixin of `PostgresHubStore`)."""

    def annotation(self, annotation_id: str) -> AnnotationRow | None:
        rows = self._read(f"SELECT {ANNOTATION_COLUMNS} FROM annotations WHERE annotation_id = %s", [annotation_id])
        return annotation_from_row(rows[0]) if rows else None

    def annotations_covering(self, device_id: str, ts: float) -> list[AnnotationRow]:
        rows = self._read(
            f"SELECT {ANNOTATION_COLUMNS} FROM annotations WHERE device_id = %s AND trace_id IS NULL "
            "AND start_ts <= %s AND end_ts >= %s ORDER BY ts, annotation_id",
            [device_id, ts, ts],
        )
        return [annotation_from_row(r) for r in rows]

    def predictions_by_trace(self, trace_ids: Sequence[str]) -> list[PredictionRow]:
        rows = self._read(f"SELECT {PREDICTION_COLUMNS} FROM predictions WHERE trace_id = ANY(%s) ORDER BY trace_id",
                          [sorted(set(trace_ids))])
        return [prediction_from_row(r) for r in rows]

    def unlabelled_predictions(
        self, reason: QueueReason, *, since: float | None = None, device_id: str | None = None, limit: int = 100
    ) -> list[PredictionRow]:
        group, order = _QUEUE[reason]
        where, params = conditions(("p.ts >= %s", since), ("p.device_id = %s", device_id))
        clauses = " AND ".join([group, *_UNANNOTATED])
        sql = (f"SELECT {prefixed(PREDICTION_COLUMNS, 'p')} FROM predictions p "
               f"WHERE {clauses} {where.replace('WHERE', 'AND', 1)} ORDER BY {order} LIMIT %s")
        return [prediction_from_row(r) for r in self._read(sql, [*params, limit])]

    def missing_traces(
        self, *, since: float | None = None, device_id: str | None = None, limit: int | None = None
    ) -> list[MissingTrace]:
        where, params = conditions(("a.ts >= %s", since), ("a.device_id = %s", device_id))
        sql = (
            "SELECT a.trace_id, a.device_id, count(*), min(a.ts), max(a.ts) FROM annotations a "
            "WHERE a.trace_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM predictions p WHERE p.trace_id = a.trace_id) "
            f"{where.replace('WHERE', 'AND', 1)} GROUP BY a.trace_id, a.device_id ORDER BY min(a.ts), a.trace_id "
            "LIMIT %s"
        )
        rows = self._read(sql, [*params, limit])
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
            # The upsert locks the set's row: a concurrent save of the same set waits for this one.
            held = conn.execute(
                "INSERT INTO label_sets (id, fingerprint, created_ts, validated_ts, summary) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET validated_ts = excluded.validated_ts, "
                "summary = excluded.summary RETURNING fingerprint",
                (label_set_id, fingerprint, ts, ts, json.dumps(summary, allow_nan=False)),
            ).fetchone()
            if held is not None and held[0] != fingerprint:  # rolled back with the transaction
                raise StoreError(f"label set {label_set_id} is stored with another fingerprint ({held[0]})")
            conn.execute("DELETE FROM label_set_items WHERE label_set_id = %s", (label_set_id,))
            conn.execute("DELETE FROM label_exclusions WHERE label_set_id = %s", (label_set_id,))
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO label_set_items (label_set_id, {_ITEM_COLUMNS}) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [(label_set_id, i.trace_id, i.device_id, i.label, i.weight, i.confidence, i.n_annotations,
                      i.cohort, i.model_version) for i in items],
                )
                cur.executemany(
                    "INSERT INTO label_exclusions (label_set_id, annotation_id, trace_id, reason, detail) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    [(label_set_id, e.annotation_id, e.trace_id, e.reason, e.detail[:DETAIL_CHARS])
                     for e in exclusions],
                )
        return label_set_id

    def label_sets(self, limit: int = 100) -> list[LabelSetRow]:
        rows = self._read("SELECT id, fingerprint, created_ts, validated_ts, summary FROM label_sets "
                          "ORDER BY validated_ts DESC, id LIMIT %s", [limit])
        return [_label_set(r) for r in rows]

    def label_set(self, label_set_id: str) -> LabelSetRow | None:
        rows = self._read("SELECT id, fingerprint, created_ts, validated_ts, summary FROM label_sets WHERE id = %s",
                          [label_set_id])
        return _label_set(rows[0]) if rows else None

    def label_set_items(
        self, label_set_id: str, *, trace_id: str | None = None, limit: int | None = None
    ) -> list[LabelItemRow]:
        where, params = conditions(("label_set_id = %s", label_set_id), ("trace_id = %s", trace_id))
        sql = f"SELECT {_ITEM_COLUMNS} FROM label_set_items {where} ORDER BY trace_id LIMIT %s"
        return [LabelItemRow(*r) for r in self._read(sql, [*params, limit])]

    def label_exclusions(
        self,
        label_set_id: str,
        *,
        trace_id: str | None = None,
        reason: str | None = None,
        limit: int | None = None,
    ) -> list[ExclusionRow]:
        where, params = conditions(("label_set_id = %s", label_set_id), ("trace_id = %s", trace_id),
                                   ("reason = %s", reason))
        sql = (f"SELECT annotation_id, trace_id, reason, detail FROM label_exclusions {where} "
               "ORDER BY annotation_id, coalesce(trace_id, ''), reason LIMIT %s")
        return [ExclusionRow(*r) for r in self._read(sql, [*params, limit])]


def _label_set(r: Row) -> LabelSetRow:
    return LabelSetRow(*decoded(r, _4=json.loads))
