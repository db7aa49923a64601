"""Rollouts on SQLite (a mixin of `SqliteHubStore`).

A rollout row holds the plan and the machine's state as JSON (``RolloutPlan.to_dict`` / ``RolloutState.to_dict``)
and the last decision. Every write that changes a rollout also appends its hub event in the same transaction,
and is guarded by a revision number, so two hub workers acting on one rollout cannot both win. A partial unique
index allows one ``running`` rollout at a time, whatever process tries to start another.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from hub.store.rows import ROLLOUT_EVENT, RolloutRow, StageStatsRow
from hub.store.sqlite.connection import SqliteConnection


class RolloutQueries(SqliteConnection):
    """`RolloutStore` on SQLite (a mixin of `SqliteHubStore`)."""

    def create_rollout(self, row: RolloutRow, *, event: Mapping[str, Any]) -> bool:
        """Insert a new rollout (revision 0) with its hub event; False when another rollout is running."""
        with self._write() as conn:  # BEGIN IMMEDIATE: the check and the insert are one step
            if row.status == "running" and conn.execute("SELECT 1 FROM rollouts WHERE status = 'running'").fetchone():
                return False
            conn.execute(
                "INSERT INTO rollouts (id, candidate, incumbent, status, created_ts, updated_ts, actor, reason, "
                "plan, state, decision, revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (row.id, row.candidate, row.incumbent, row.status, row.created_ts, row.updated_ts, row.actor,
                 row.reason, _dump(row.plan), _dump(row.state), _dump(row.decision)),
            )
            _event(conn, row.updated_ts, event)
        return True

    def update_rollout(
        self, rollout_id: str, *, revision: int, status: str, updated_ts: float, state: Mapping[str, Any],
        decision: Mapping[str, Any] | None, event: Mapping[str, Any] | None = None,
    ) -> bool:
        """Store a rollout's new state if it is still at `revision` (then revision + 1); False if it moved on."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE rollouts SET status = ?, updated_ts = ?, state = ?, decision = ?, revision = revision + 1 "
                "WHERE id = ? AND revision = ?",
                (status, updated_ts, _dump(state), _dump(decision), rollout_id, revision),
            )
            if cur.rowcount != 1:
                return False
            if event is not None:
                _event(conn, updated_ts, event)
        return True

    def rollout(self, rollout_id: str) -> RolloutRow | None:
        rows = self._read("SELECT * FROM rollouts WHERE id = ?", [rollout_id])
        return _rollout(rows[0]) if rows else None

    def rollouts(self, *, status: str | None = None, limit: int = 100) -> list[RolloutRow]:
        """Newest first."""
        if status is None:
            rows = self._read("SELECT * FROM rollouts ORDER BY created_ts DESC, id DESC LIMIT ?", [limit])
        else:
            rows = self._read("SELECT * FROM rollouts WHERE status = ? ORDER BY created_ts DESC, id DESC LIMIT ?",
                              [status, limit])
        return [_rollout(r) for r in rows]

    def stage_stats(
        self, *, period_end_since: float, received_since: float, device_ids: Sequence[str] | None = None
    ) -> list[StageStatsRow]:
        """Stats whose period ends at or after `period_end_since` and that the hub received at or after
        `received_since`, oldest first, without their feature histograms."""
        where = ["period_end >= ?", "received_at >= ?"]
        params: list[Any] = [period_end_since, received_since]
        if device_ids is not None:
            where.append(f"device_id IN ({', '.join('?' for _ in device_ids)})" if device_ids else "0")
            params.extend(device_ids)
        rows = self._read(
            "SELECT device_id, model_version, received_at, windows, anomalies, inference_errors, nan_scores, "
            f"latency_p99_ms, score_hist FROM stats WHERE {' AND '.join(where)} ORDER BY period_end, msg_id", params)
        return [StageStatsRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8])) for r in rows]


def _dump(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(dict(value), allow_nan=False)


def _event(conn: sqlite3.Connection, ts: float, payload: Mapping[str, Any]) -> None:
    conn.execute("INSERT INTO events (ts, kind, payload) VALUES (?, ?, ?)",
                 (ts, ROLLOUT_EVENT, json.dumps(dict(payload), allow_nan=False)))


def _rollout(r: sqlite3.Row) -> RolloutRow:
    return RolloutRow(
        id=r["id"], candidate=r["candidate"], incumbent=r["incumbent"], status=r["status"],
        created_ts=r["created_ts"], updated_ts=r["updated_ts"], actor=r["actor"], reason=r["reason"],
        plan=json.loads(r["plan"]), state=json.loads(r["state"]),
        decision=None if r["decision"] is None else json.loads(r["decision"]), revision=r["revision"],
    )


__all__ = ["RolloutQueries"]
