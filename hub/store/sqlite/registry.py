"""The model registry on SQLite: versions, status changes and their audit rows, each in one transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from hub.store.rows import MODEL_STATUSES, AuditRow, ModelVersionRow
from hub.store.sqlite.connection import SqliteConnection
from shared.errors import StoreError


class RegistryQueries(SqliteConnection):
    """`RegistryStore` on SQLite (a mixin of `SqliteHubStore`)."""

    def save_model_version(self, row: ModelVersionRow, *, actor: str) -> None:
        """Register a new version (refuses to overwrite one) and audit its creation, in one transaction."""
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM model_versions WHERE version = ?", (row.version,)).fetchone():
                raise StoreError(f"model version {row.version} is already registered")
            conn.execute(
                "INSERT INTO model_versions (version, parent_version, status, created_ts, updated_ts, created_by, "
                "reason, trigger_id, sha256, signature, manifest, gate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.version, row.parent_version, row.status, row.created_ts, row.updated_ts, row.created_by,
                 row.reason, row.trigger_id, row.sha256, row.signature, json.dumps(row.manifest, allow_nan=False),
                 None if row.gate is None else json.dumps(row.gate, allow_nan=False)),
            )
            _audit(conn, row.created_ts, row.version, actor, "registered", None, row.status, row.reason,
                   {"parent_version": row.parent_version, "sha256": row.sha256, "trigger_id": row.trigger_id})

    def next_assign_counter(self, device_id: str, *, floor: int = 0) -> int:
        """The next signed-assignment counter of a device: above every one issued before and at least `floor`."""
        with self._write() as conn:
            row = conn.execute("SELECT counter FROM assign_counters WHERE device_id = ?", (device_id,)).fetchone()
            counter = max(floor, (row[0] + 1) if row else 0)
            conn.execute("INSERT INTO assign_counters (device_id, counter) VALUES (?, ?) "
                         "ON CONFLICT (device_id) DO UPDATE SET counter = excluded.counter", (device_id, counter))
        return counter

    def set_model_status(
        self, version: str, status: str, *, actor: str, action: str, reason: str, ts: float,
        details: Mapping[str, Any] | None = None, gate: Mapping[str, Any] | None = None,
    ) -> ModelVersionRow:
        """Change a version's status (and optionally record its gate decision) with an audit row."""
        if status not in MODEL_STATUSES:
            raise StoreError(f"unknown model status {status!r}; use one of {', '.join(MODEL_STATUSES)}")
        with self._write() as conn:
            held = conn.execute("SELECT status FROM model_versions WHERE version = ?", (version,)).fetchone()
            if held is None:
                raise StoreError(f"no model version {version} in the registry")
            if gate is not None:
                conn.execute("UPDATE model_versions SET gate = ? WHERE version = ?",
                             (json.dumps(dict(gate), allow_nan=False), version))
            conn.execute("UPDATE model_versions SET status = ?, updated_ts = ? WHERE version = ?",
                         (status, ts, version))
            _audit(conn, ts, version, actor, action, held[0], status, reason, dict(details or {}))
        row = self.model_version(version)
        assert row is not None
        return row

    def model_version(self, version: str) -> ModelVersionRow | None:
        rows = self._read("SELECT * FROM model_versions WHERE version = ?", [version])
        return _version(rows[0]) if rows else None

    def model_versions(self, *, status: str | None = None, limit: int = 100) -> list[ModelVersionRow]:
        """Newest first."""
        if status is None:
            rows = self._read("SELECT * FROM model_versions ORDER BY created_ts DESC LIMIT ?", [limit])
        else:
            rows = self._read("SELECT * FROM model_versions WHERE status = ? ORDER BY created_ts DESC LIMIT ?",
                              [status, limit])
        return [_version(r) for r in rows]

    def model_audit(self, *, version: str | None = None, limit: int = 100) -> list[AuditRow]:
        """Oldest first."""
        if version is None:
            rows = self._read("SELECT * FROM model_audit ORDER BY id DESC LIMIT ?", [limit])
        else:
            rows = self._read("SELECT * FROM model_audit WHERE version = ? ORDER BY id DESC LIMIT ?", [version, limit])
        return [_audit_row(r) for r in reversed(rows)]


def _audit(conn: sqlite3.Connection, ts: float, version: str, actor: str, action: str, from_status: str | None,
           to_status: str | None, reason: str, details: Mapping[str, Any]) -> None:
    conn.execute(
        "INSERT INTO model_audit (ts, version, actor, action, from_status, to_status, reason, details) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (ts, version, actor, action, from_status, to_status, reason, json.dumps(dict(details), allow_nan=False)),
    )


def _version(r: sqlite3.Row) -> ModelVersionRow:
    return ModelVersionRow(
        version=r["version"], parent_version=r["parent_version"], status=r["status"], created_ts=r["created_ts"],
        updated_ts=r["updated_ts"], created_by=r["created_by"], reason=r["reason"], trigger_id=r["trigger_id"],
        sha256=r["sha256"], signature=r["signature"], manifest=json.loads(r["manifest"]),
        gate=None if r["gate"] is None else json.loads(r["gate"]),
    )


def _audit_row(r: sqlite3.Row) -> AuditRow:
    return AuditRow(id=r["id"], ts=r["ts"], version=r["version"], actor=r["actor"], action=r["action"],
                    from_status=r["from_status"], to_status=r["to_status"], reason=r["reason"],
                    details=json.loads(r["details"]))


__all__ = ["RegistryQueries"]
