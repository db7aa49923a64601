"""Drift references on SQLite: a version's references taken from the fleet, each saved with its audit row."""

from __future__ import annotations

import json
import sqlite3

from hub.store.rows import DriftReferenceRow
from hub.store.sqlite.connection import SqliteConnection

REFERENCE_ACTION = "drift_reference"  # the model_audit action of a reference taken


class ReferenceQueries(SqliteConnection):
    """`ReferenceStore` on SQLite (a mixin of `SqliteHubStore`)."""

    def save_drift_reference(self, row: DriftReferenceRow) -> DriftReferenceRow:
        """Store a new reference of `row.version` and its `model_audit` row in one transaction; returns it saved."""
        with self._write() as conn:
            cur = conn.execute(
                'INSERT INTO drift_references (version, ts, actor, reason, start, "end", devices, device_baselines, '
                "windows, summary, counts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.version, row.ts, row.actor, row.reason, row.start, row.end,
                 None if row.devices is None else json.dumps(row.devices), int(row.device_baselines), row.windows,
                 json.dumps(row.summary, allow_nan=False), json.dumps(row.counts, allow_nan=False)),
            )
            ref_id = int(cur.lastrowid or 0)
            details = {"reference_id": ref_id, "start": row.start, "end": row.end, "windows": row.windows,
                       "devices": row.devices, "device_baselines": row.device_baselines,
                       "stats_rows": row.summary.get("stats_rows"), "devices_used": row.summary.get("n_devices")}
            conn.execute(
                "INSERT INTO model_audit (ts, version, actor, action, from_status, to_status, reason, details) "
                "VALUES (?, ?, ?, ?, NULL, NULL, ?, ?)",
                (row.ts, row.version, row.actor, REFERENCE_ACTION, row.reason, json.dumps(details, allow_nan=False)),
            )
        saved = self._references("WHERE id = ?", [ref_id], counts=True)
        return saved[0]

    def drift_reference(self, version: str) -> DriftReferenceRow | None:
        """The reference drift compares `version` with: its newest, or None (then the manifest's is used)."""
        rows = self._references("WHERE version = ? ORDER BY id DESC LIMIT 1", [version], counts=True)
        return rows[0] if rows else None

    def drift_references(self, version: str, *, limit: int = 100) -> list[DriftReferenceRow]:
        """`version`'s references, newest first, without their counts (``counts`` is empty)."""
        return self._references("WHERE version = ? ORDER BY id DESC LIMIT ?", [version, limit], counts=False)

    def first_stats_ts(self, version: str) -> float | None:
        rows = self._read("SELECT MIN(period_start) AS first FROM stats WHERE model_version = ?", [version])
        return None if not rows or rows[0]["first"] is None else float(rows[0]["first"])

    def stats_ends(self, version: str) -> tuple[float, float] | None:
        rows = self._read("SELECT MIN(period_end) AS first, MAX(period_end) AS last FROM stats WHERE model_version = ?",
                          [version])
        return None if not rows or rows[0]["first"] is None else (float(rows[0]["first"]), float(rows[0]["last"]))

    def _references(self, where: str, params: list[object], *, counts: bool) -> list[DriftReferenceRow]:
        columns = "*" if counts else ('id, version, ts, actor, reason, start, "end", devices, device_baselines, '
                                      "windows, summary, '{}' AS counts")
        return [_row(r) for r in self._read(f"SELECT {columns} FROM drift_references {where}", params)]


def _row(r: sqlite3.Row) -> DriftReferenceRow:
    return DriftReferenceRow(
        id=r["id"], version=r["version"], ts=r["ts"], actor=r["actor"], reason=r["reason"], start=r["start"],
        end=r["end"], devices=None if r["devices"] is None else json.loads(r["devices"]),
        device_baselines=bool(r["device_baselines"]), windows=r["windows"], summary=json.loads(r["summary"]),
        counts=json.loads(r["counts"]),
    )


__all__ = ["REFERENCE_ACTION", "ReferenceQueries"]
