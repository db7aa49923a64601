"""Training jobs and the frozen evaluation slice on PostgreSQL (a mixin of `PostgresHubStore`).

As on SQLite: one job queued or running at a time (the partial unique index ``training_jobs_one_active``
settles a race between processes), ``v<N>`` names reserved under a lock, and the first eval-slice assignment
of a trace kept forever (``ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hub.store.postgres.common import decoded
from hub.store.postgres.connection import PostgresConnection, Row, lock, violated
from hub.store.rows import JOB_STATUSES, TrainingJobRow
from hub.store.sqlite.training import JOB_ERROR_CHARS, JOB_UPDATABLE, VERSION_NAME
from shared.errors import StoreError

_COLUMNS = ("id, status, stage, progress, trigger, trigger_id, actor, reason, label_set_id, result_version, "
            "gate_verdict, error, drift_cursor, created_ts, started_ts, finished_ts, details")


class TrainingQueries(PostgresConnection):
    """`TrainingStore` on PostgreSQL (a mixin of `PostgresHubStore`)."""

    # -- jobs --------------------------------------------------------------------------------------
    def create_training_job(self, row: TrainingJobRow) -> TrainingJobRow | None:
        """Insert a queued job unless another job is queued or running (then None), in one transaction."""
        try:
            with self._write() as conn:
                if conn.execute("SELECT 1 FROM training_jobs WHERE status IN ('queued', 'running') LIMIT 1").fetchone():
                    return None
                if conn.execute("SELECT 1 FROM training_jobs WHERE id = %s", (row.id,)).fetchone():
                    raise StoreError(f"training job {row.id} already exists")
                conn.execute(
                    f"INSERT INTO training_jobs ({_COLUMNS}) VALUES ({', '.join(['%s'] * 17)})",
                    (row.id, row.status, row.stage, row.progress, row.trigger, row.trigger_id, row.actor, row.reason,
                     row.label_set_id, row.result_version, row.gate_verdict, row.error, row.drift_cursor,
                     row.created_ts, row.started_ts, row.finished_ts, json.dumps(row.details, allow_nan=False)),
                )
        except StoreError as exc:
            if violated(exc, "training_jobs_one_active"):
                return None
            raise
        return self.training_job(row.id)

    def update_training_job(self, job_id: str, **fields: Any) -> TrainingJobRow:
        """Set some of: status, stage, progress, label_set_id, result_version, gate_verdict, error,
        started_ts, finished_ts, details."""
        unknown = sorted(set(fields) - JOB_UPDATABLE)
        if unknown:
            raise StoreError(f"cannot update training job field(s) {', '.join(unknown)}")
        if "status" in fields and fields["status"] not in JOB_STATUSES:
            raise StoreError(f"unknown job status {fields['status']!r}; use one of {', '.join(JOB_STATUSES)}")
        if "error" in fields and fields["error"] is not None:
            fields["error"] = str(fields["error"])[:JOB_ERROR_CHARS]
        if "details" in fields:
            fields["details"] = json.dumps(dict(fields["details"]), allow_nan=False)
        if fields:
            columns = sorted(fields)  # names from JOB_UPDATABLE only
            with self._write() as conn:
                cur = conn.execute(
                    f"UPDATE training_jobs SET {', '.join(f'{c} = %s' for c in columns)} WHERE id = %s",
                    [*(fields[c] for c in columns), job_id],
                )
                if cur.rowcount == 0:
                    raise StoreError(f"no training job {job_id}")
        row = self.training_job(job_id)
        if row is None:
            raise StoreError(f"no training job {job_id}")
        return row

    def training_job(self, job_id: str) -> TrainingJobRow | None:
        rows = self._read(f"SELECT {_COLUMNS} FROM training_jobs WHERE id = %s", [job_id])
        return _job(rows[0]) if rows else None

    def training_jobs(self, *, status: str | None = None, limit: int = 100) -> list[TrainingJobRow]:
        """Newest first."""
        where, params = ("WHERE status = %s", [status]) if status is not None else ("", [])
        rows = self._read(f"SELECT {_COLUMNS} FROM training_jobs {where} ORDER BY created_ts DESC, id DESC LIMIT %s",
                          [*params, limit])
        return [_job(r) for r in rows]

    def fail_unfinished_training_jobs(self, *, error: str, ts: float) -> list[str]:
        """Mark every queued or running job failed (after a restart nothing runs them); returns their ids."""
        with self._write() as conn:
            rows = conn.execute(
                "UPDATE training_jobs SET status = 'failed', error = %s, finished_ts = %s "
                "WHERE status IN ('queued', 'running') RETURNING id", (error[:JOB_ERROR_CHARS], ts)).fetchall()
        return sorted(r[0] for r in rows)

    def reserve_model_version(self, job_id: str, *, prefix: str = "v") -> str:
        """Name the job's model ``v<N+1>``, N the highest ``v<n>`` registered or reserved, and record it.

        The read and the reservation hold one advisory lock, so two jobs (or two hub processes) never get the
        same name. Names of other shapes are ignored.
        """
        if prefix != "v":
            raise StoreError("only the 'v<N>' version scheme is supported")
        with self._write() as conn:
            lock(conn, "training.reserve_model_version")
            if not conn.execute("SELECT 1 FROM training_jobs WHERE id = %s", (job_id,)).fetchone():
                raise StoreError(f"no training job {job_id}")
            taken = [r[0] for r in conn.execute(
                "SELECT version FROM model_versions UNION "
                "SELECT result_version FROM training_jobs WHERE result_version IS NOT NULL"
            ).fetchall()]
            highest = max((int(m.group(1)) for v in taken if (m := VERSION_NAME.match(v))), default=0)
            version = f"{prefix}{highest + 1}"
            conn.execute("UPDATE training_jobs SET result_version = %s WHERE id = %s", (version, job_id))
        return version

    # -- the frozen evaluation slice ---------------------------------------------------------------
    def freeze_eval_slice(self, assignments: Mapping[str, bool], *, ts: float) -> dict[str, bool]:
        """Record trace → in-eval-slice for traces not seen before; return the stored assignment of each."""
        if assignments:
            with self._write() as conn:
                conn.cursor().executemany(
                    "INSERT INTO eval_slice (trace_id, in_eval, frozen_at) VALUES (%s, %s, %s) "
                    "ON CONFLICT (trace_id) DO NOTHING",
                    [(t, int(bool(m)), ts) for t, m in sorted(assignments.items())],
                )
        return self.eval_slice_assignments(list(assignments))

    def eval_slice_assignments(self, trace_ids: list[str]) -> dict[str, bool]:
        """The stored assignment of each of `trace_ids` that has one."""
        rows = self._read("SELECT trace_id, in_eval FROM eval_slice WHERE trace_id = ANY(%s)", [sorted(set(trace_ids))])
        return {r[0]: bool(r[1]) for r in rows}

    def eval_slice(self, *, limit: int | None = None) -> list[tuple[str, float]]:
        """(trace_id, frozen_at) of every trace in the evaluation slice, oldest first."""
        rows = self._read(
            "SELECT trace_id, frozen_at FROM eval_slice WHERE in_eval = 1 ORDER BY frozen_at, trace_id LIMIT %s",
            [limit],
        )
        return [(r[0], float(r[1])) for r in rows]


def _job(r: Row) -> TrainingJobRow:
    return TrainingJobRow(*decoded(r, _16=json.loads))


__all__ = ["TrainingQueries"]
