"""Drift references on PostgreSQL: a version's references taken from the fleet, each saved with its audit row."""

from __future__ import annotations

import json

from hub.store.postgres.common import decoded, json_or_none
from hub.store.postgres.connection import PostgresConnection, Row
from hub.store.postgres.registry import audit
from hub.store.rows import DriftReferenceRow
from hub.store.sqlite.references import REFERENCE_ACTION

_COLUMNS = 'id, version, ts, actor, reason, start, "end", devices, device_baselines, windows, summary'


class ReferenceQueries(PostgresConnection):
    """`ReferenceStore` on PostgreSQL (a mixin of `PostgresHubStore`)."""

    def save_drift_reference(self, row: DriftReferenceRow) -> DriftReferenceRow:
        """Store a new reference of `row.version` and its `model_audit` row in one transaction; returns it saved."""
        with self._write() as conn:
            saved = conn.execute(
                'INSERT INTO drift_references (version, ts, actor, reason, start, "end", devices, device_baselines, '
                "windows, summary, counts) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (row.version, row.ts, row.actor, row.reason, row.start, row.end,
                 None if row.devices is None else json.dumps(row.devices), int(row.device_baselines), row.windows,
                 json.dumps(row.summary, allow_nan=False), json.dumps(row.counts, allow_nan=False)),
            ).fetchone()
            assert saved is not None
            ref_id = int(saved[0])
            details = {"reference_id": ref_id, "start": row.start, "end": row.end, "windows": row.windows,
                       "devices": row.devices, "device_baselines": row.device_baselines,
                       "stats_rows": row.summary.get("stats_rows"), "devices_used": row.summary.get("n_devices")}
            audit(conn, row.ts, row.version, row.actor, REFERENCE_ACTION, None, None, row.reason, details)
        return self._references("WHERE id = %s", [ref_id], counts=True)[0]

    def drift_reference(self, version: str) -> DriftReferenceRow | None:
        """The reference drift compares `version` with: its newest, or None (then the manifest's is used)."""
        rows = self._references("WHERE version = %s ORDER BY id DESC LIMIT 1", [version], counts=True)
        return rows[0] if rows else None

    def drift_references(self, version: str, *, limit: int = 100) -> list[DriftReferenceRow]:
        """`version`'s references, newest first, without their counts (``counts`` is empty)."""
        return self._references("WHERE version = %s ORDER BY id DESC LIMIT %s", [version, limit], counts=False)

    def first_stats_ts(self, version: str) -> float | None:
        rows = self._read("SELECT min(period_start) FROM stats WHERE model_version = %s", [version])
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    def stats_ends(self, version: str) -> tuple[float, float] | None:
        rows = self._read("SELECT min(period_end), max(period_end) FROM stats WHERE model_version = %s", [version])
        return None if not rows or rows[0][0] is None else (float(rows[0][0]), float(rows[0][1]))

    def _references(self, where: str, params: list[object], *, counts: bool) -> list[DriftReferenceRow]:
        columns = _COLUMNS + (", counts" if counts else ", '{}'")
        return [_row(r) for r in self._read(f"SELECT {columns} FROM drift_references {where}", params)]


def _row(r: Row) -> DriftReferenceRow:
    return DriftReferenceRow(*decoded(r, _7=json_or_none, _8=bool, _10=json.loads, _11=json.loads))


__all__ = ["ReferenceQueries"]
