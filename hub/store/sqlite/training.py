"""Training jobs and the frozen evaluation slice on SQLite (a mixin of `SqliteHubStore`).

A job row is the whole life of one retrain: queued, running (stage and progress), then succeeded or failed
with the version it made and the gate's verdict. `eval_slice` remembers, for every labelled trace the
training pipeline has seen, whether it belongs to the evaluation slice; the first assignment wins forever.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping
from typing import Any

from hub.store.rows import JOB_STATUSES, TrainingJobRow
from hub.store.sqlite.connection import SqliteConnection
from shared.errors import StoreError

VERSION_NAME = re.compile(r"^v(\d+)$")
_IN_CHUNK = 500
JOB_ERROR_CHARS = 4000
JOB_UPDATABLE = frozenset(
    {"status", "stage", "progress", "label_set_id", "result_version", "gate_verdict", "error", "started_ts",
     "finished_ts", "details"}
)


class TrainingQueries(SqliteConnection):
    """`TrainingStore` on SQLite (a mixin of `SqliteHubStore`)."""

    # -- jobs --------------------------------------------------------------------------------------
    def create_training_job(self, row: TrainingJobRow) -> TrainingJobRow | None:
        """Insert a queued job unless another job is queued or running (then None), in one transaction."""
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM training_jobs WHERE status IN ('queued', 'running') LIMIT 1").fetchone():
                return None
            if conn.execute("SELECT 1 FROM training_jobs WHERE id = ?", (row.id,)).fetchone():
                raise StoreError(f"training job {row.id} already exists")
            conn.execute(
                "INSERT INTO training_jobs (id, status, stage, progress, trigger, trigger_id, actor, reason, "
                "label_set_id, result_version, gate_verdict, error, drift_cursor, created_ts, started_ts, "
                "finished_ts, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.id, row.status, row.stage, row.progress, row.trigger, row.trigger_id, row.actor, row.reason,
                 row.label_set_id, row.result_version, row.gate_verdict, row.error, row.drift_cursor,
                 row.created_ts, row.started_ts, row.finished_ts, json.dumps(row.details, allow_nan=False)),
            )
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
            columns = sorted(fields)
            with self._write() as conn:
                cur = conn.execute(
                    f"UPDATE training_jobs SET {', '.join(f'{c} = ?' for c in columns)} WHERE id = ?",
                    [*(fields[c] for c in columns), job_id],
                )
                if cur.rowcount == 0:
                    raise StoreError(f"no training job {job_id}")
        row = self.training_job(job_id)
        if row is None:
            raise StoreError(f"no training job {job_id}")
        return row

    def training_job(self, job_id: str) -> TrainingJobRow | None:
        rows = self._read("SELECT * FROM training_jobs WHERE id = ?", [job_id])
        return _job(rows[0]) if rows else None

    def training_jobs(self, *, status: str | None = None, limit: int = 100) -> list[TrainingJobRow]:
        """Newest first."""
        if status is None:
            rows = self._read("SELECT * FROM training_jobs ORDER BY created_ts DESC, id DESC LIMIT ?", [limit])
        else:
            rows = self._read(
                "SELECT * FROM training_jobs WHERE status = ? ORDER BY created_ts DESC, id DESC LIMIT ?",
                [status, limit],
            )
        return [_job(r) for r in rows]

    def fail_unfinished_training_jobs(self, *, error: str, ts: float) -> list[str]:
        """Mark every queued or running job failed (after a restart nothing runs them); returns their ids."""
        with self._write() as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM training_jobs WHERE status IN ('queued', 'running')")]
            conn.executemany(
                "UPDATE training_jobs SET status = 'failed', error = ?, finished_ts = ? WHERE id = ?",
                [(error[:JOB_ERROR_CHARS], ts, i) for i in ids],
            )
        return ids

    def reserve_model_version(self, job_id: str, *, prefix: str = "v") -> str:
        """Name the job's model ``v<N+1>``, N the highest ``v<n>`` registered or reserved, and record it.

        One write transaction (``BEGIN IMMEDIATE``) reads and reserves, so two jobs (or two hub processes)
        never get the same name. Names of other shapes are ignored.
        """
        if prefix != "v":
            raise StoreError("only the 'v<N>' version scheme is supported")
        with self._write() as conn:
            if not conn.execute("SELECT 1 FROM training_jobs WHERE id = ?", (job_id,)).fetchone():
                raise StoreError(f"no training job {job_id}")
            taken = [r[0] for r in conn.execute(
                "SELECT version FROM model_versions UNION "
                "SELECT result_version FROM training_jobs WHERE result_version IS NOT NULL"
            )]
            highest = max((int(m.group(1)) for v in taken if (m := VERSION_NAME.match(v))), default=0)
            version = f"{prefix}{highest + 1}"
            conn.execute("UPDATE training_jobs SET result_version = ? WHERE id = ?", (version, job_id))
        return version

    # -- the frozen evaluation slice ---------------------------------------------------------------
    def freeze_eval_slice(self, assignments: Mapping[str, bool], *, ts: float) -> dict[str, bool]:
        """Record trace → in-eval-slice for traces not seen before; return the stored assignment of each.

        A trace keeps the assignment it got first, whatever is passed later.
        """
        if assignments:
            with self._write() as conn:
                conn.executemany(
                    "INSERT OR IGNORE INTO eval_slice (trace_id, in_eval, frozen_at) VALUES (?, ?, ?)",
                    [(t, int(bool(m)), ts) for t, m in assignments.items()],
                )
        return self.eval_slice_assignments(list(assignments))

    def eval_slice_assignments(self, trace_ids: list[str]) -> dict[str, bool]:
        """The stored assignment of each of `trace_ids` that has one."""
        unique = sorted(set(trace_ids))
        out: dict[str, bool] = {}
        for i in range(0, len(unique), _IN_CHUNK):
            chunk = unique[i : i + _IN_CHUNK]
            rows = self._read(
                f"SELECT trace_id, in_eval FROM eval_slice WHERE trace_id IN ({', '.join('?' for _ in chunk)})", chunk
            )
            out.update({r[0]: bool(r[1]) for r in rows})
        return out

    def eval_slice(self, *, limit: int | None = None) -> list[tuple[str, float]]:
        """(trace_id, frozen_at) of every trace in the evaluation slice, oldest first."""
        rows = self._read(
            "SELECT trace_id, frozen_at FROM eval_slice WHERE in_eval = 1 ORDER BY frozen_at, trace_id LIMIT ?",
            [-1 if limit is None else limit],
        )
        return [(r[0], float(r[1])) for r in rows]


def _job(r: sqlite3.Row) -> TrainingJobRow:
    return TrainingJobRow(
        id=r["id"], status=r["status"], stage=r["stage"], progress=float(r["progress"]), trigger=r["trigger"],
        trigger_id=r["trigger_id"], actor=r["actor"], reason=r["reason"], label_set_id=r["label_set_id"],
        result_version=r["result_version"], gate_verdict=r["gate_verdict"], error=r["error"],
        drift_cursor=int(r["drift_cursor"]), created_ts=float(r["created_ts"]), started_ts=r["started_ts"],
        finished_ts=r["finished_ts"], details=json.loads(r["details"]),
    )


__all__ = ["TrainingQueries"]
