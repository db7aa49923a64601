"""Rollouts on PostgreSQL (a mixin of `PostgresHubStore`).

As on SQLite: the plan and state as JSON, every change with its hub event in one transaction, guarded by a
revision number (``UPDATE … WHERE revision = %s`` re-checks the row after waiting for a concurrent writer), and
the partial unique index ``rollouts_one_running`` letting one rollout run at a time across hub processes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from hub.store.postgres.common import decoded, json_or_none
from hub.store.postgres.connection import PostgresConnection, Row, violated
from hub.store.postgres.drift import insert_event
from hub.store.postgres.ingest import any_of
from hub.store.rows import ROLLOUT_EVENT, RolloutRow, StageStatsRow
from shared.errors import StoreError

_COLUMNS = ("id, candidate, incumbent, status, created_ts, updated_ts, actor, reason, plan, state, decision, "
            "revision")


class RolloutQueries(PostgresConnection):
    """`RolloutStore` on PostgreSQL (a mixin of `PostgresHubStore`)."""

    def create_rollout(self, row: RolloutRow, *, event: Mapping[str, Any]) -> bool:
        """Insert a new rollout (revision 0) with its hub event; False when another rollout is running."""
        try:
            with self._write() as conn:
                conn.execute(
                    f"INSERT INTO rollouts ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0)",
                    (row.id, row.candidate, row.incumbent, row.status, row.created_ts, row.updated_ts, row.actor,
                     row.reason, _dump(row.plan), _dump(row.state), _dump(row.decision)),
                )
                insert_event(conn, row.updated_ts, ROLLOUT_EVENT, event)
        except StoreError as exc:
            if violated(exc, "rollouts_one_running"):  # another rollout runs (checked by the index, race-free)
                return False
            raise
        return True

    def update_rollout(
        self, rollout_id: str, *, revision: int, status: str, updated_ts: float, state: Mapping[str, Any],
        decision: Mapping[str, Any] | None, event: Mapping[str, Any] | None = None,
    ) -> bool:
        """Store a rollout's new state if it is still at `revision` (then revision + 1); False if it moved on."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE rollouts SET status = %s, updated_ts = %s, state = %s, decision = %s, "
                "revision = revision + 1 WHERE id = %s AND revision = %s",
                (status, updated_ts, _dump(state), _dump(decision), rollout_id, revision),
            )
            if cur.rowcount != 1:
                return False
            if event is not None:
                insert_event(conn, updated_ts, ROLLOUT_EVENT, event)
        return True

    def rollout(self, rollout_id: str) -> RolloutRow | None:
        rows = self._read(f"SELECT {_COLUMNS} FROM rollouts WHERE id = %s", [rollout_id])
        return _rollout(rows[0]) if rows else None

    def rollouts(self, *, status: str | None = None, limit: int = 100) -> list[RolloutRow]:
        """Newest first."""
        where, params = ("WHERE status = %s", [status]) if status is not None else ("", [])
        rows = self._read(f"SELECT {_COLUMNS} FROM rollouts {where} ORDER BY created_ts DESC, id DESC LIMIT %s",
                          [*params, limit])
        return [_rollout(r) for r in rows]

    def stage_stats(
        self, *, period_end_since: float, received_since: float, device_ids: Sequence[str] | None = None
    ) -> list[StageStatsRow]:
        """Stats whose period ends at or after `period_end_since` and that the hub received at or after
        `received_since`, oldest first, without their feature histograms."""
        where = ["period_end >= %s", "received_at >= %s"]
        params: list[Any] = [period_end_since, received_since]
        any_of(where, params, "device_id", device_ids)
        rows = self._read(
            "SELECT device_id, model_version, received_at, windows, anomalies, inference_errors, nan_scores, "
            f"latency_p99_ms, score_hist FROM stats WHERE {' AND '.join(where)} ORDER BY period_end, msg_id", params)
        return [StageStatsRow(*decoded(r, _8=json.loads)) for r in rows]


def _dump(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(dict(value), allow_nan=False)


def _rollout(r: Row) -> RolloutRow:
    return RolloutRow(*decoded(r, _8=json.loads, _9=json.loads, _10=json_or_none))


__all__ = ["RolloutQueries"]
