"""The model registry on PostgreSQL: versions, status changes and their audit rows, each in one transaction."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import psycopg

from hub.store.postgres.common import decoded, json_or_none
from hub.store.postgres.connection import PostgresConnection, Row
from hub.store.rows import MODEL_STATUSES, AuditRow, ModelVersionRow
from shared.errors import StoreError

_VERSION_COLUMNS = ("version, parent_version, status, created_ts, updated_ts, created_by, reason, trigger_id, sha256, "
                    "signature, manifest, gate")
_AUDIT_COLUMNS = "id, ts, version, actor, action, from_status, to_status, reason, details"


class RegistryQueries(PostgresConnection):
    """`RegistryStore` on PostgreSQL (a mixin of `PostgresHubStore`)."""

    def save_model_version(self, row: ModelVersionRow, *, actor: str) -> None:
        """Register a new version (refuses to overwrite one) and audit its creation, in one transaction."""
        with self._write() as conn:
            inserted = conn.execute(
                f"INSERT INTO model_versions ({_VERSION_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                "%s, %s) ON CONFLICT (version) DO NOTHING",
                (row.version, row.parent_version, row.status, row.created_ts, row.updated_ts, row.created_by,
                 row.reason, row.trigger_id, row.sha256, row.signature, json.dumps(row.manifest, allow_nan=False),
                 None if row.gate is None else json.dumps(row.gate, allow_nan=False)),
            ).rowcount
            if not inserted:
                raise StoreError(f"model version {row.version} is already registered")
            audit(conn, row.created_ts, row.version, actor, "registered", None, row.status, row.reason,
                  {"parent_version": row.parent_version, "sha256": row.sha256, "trigger_id": row.trigger_id})

    def next_assign_counter(self, device_id: str, *, floor: int = 0) -> int:
        """The next signed-assignment counter of a device: above every one issued before and at least `floor`."""
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO assign_counters (device_id, counter) VALUES (%s, greatest(%s, 0)) "
                "ON CONFLICT (device_id) DO UPDATE SET counter = greatest(%s, assign_counters.counter + 1) "
                "RETURNING counter", (device_id, floor, floor)).fetchone()
        assert row is not None
        return int(row[0])

    def set_model_status(
        self, version: str, status: str, *, actor: str, action: str, reason: str, ts: float,
        details: Mapping[str, Any] | None = None, gate: Mapping[str, Any] | None = None,
    ) -> ModelVersionRow:
        """Change a version's status (and optionally record its gate decision) with an audit row."""
        if status not in MODEL_STATUSES:
            raise StoreError(f"unknown model status {status!r}; use one of {', '.join(MODEL_STATUSES)}")
        with self._write() as conn:
            held = conn.execute("SELECT status FROM model_versions WHERE version = %s FOR UPDATE",
                                (version,)).fetchone()
            if held is None:
                raise StoreError(f"no model version {version} in the registry")
            if gate is not None:
                conn.execute("UPDATE model_versions SET gate = %s WHERE version = %s",
                             (json.dumps(dict(gate), allow_nan=False), version))
            conn.execute("UPDATE model_versions SET status = %s, updated_ts = %s WHERE version = %s",
                         (status, ts, version))
            audit(conn, ts, version, actor, action, held[0], status, reason, dict(details or {}))
        row = self.model_version(version)
        assert row is not None
        return row

    def model_version(self, version: str) -> ModelVersionRow | None:
        rows = self._read(f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE version = %s", [version])
        return _version(rows[0]) if rows else None

    def model_versions(self, *, status: str | None = None, limit: int = 100) -> list[ModelVersionRow]:
        """Newest first."""
        where, params = ("WHERE status = %s", [status]) if status is not None else ("", [])
        rows = self._read(f"SELECT {_VERSION_COLUMNS} FROM model_versions {where} ORDER BY created_ts DESC LIMIT %s",
                          [*params, limit])
        return [_version(r) for r in rows]

    def model_audit(self, *, version: str | None = None, limit: int = 100) -> list[AuditRow]:
        """Oldest first."""
        where, params = ("WHERE version = %s", [version]) if version is not None else ("", [])
        rows = self._read(f"SELECT {_AUDIT_COLUMNS} FROM model_audit {where} ORDER BY id DESC LIMIT %s",
                          [*params, limit])
        return [AuditRow(*decoded(r, _8=json.loads)) for r in reversed(rows)]


def audit(conn: psycopg.Connection[Any], ts: float, version: str, actor: str, action: str, from_status: str | None,
          to_status: str | None, reason: str, details: Mapping[str, Any]) -> None:
    """One `model_audit` row, inside the caller's transaction."""
    conn.execute(
        "INSERT INTO model_audit (ts, version, actor, action, from_status, to_status, reason, details) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (ts, version, actor, action, from_status, to_status, reason, json.dumps(dict(details), allow_nan=False)),
    )


def _version(r: Row) -> ModelVersionRow:
    return ModelVersionRow(*decoded(r, _10=json.loads, _11=json_or_none))


__all__ = ["RegistryQueries", "audit"]
