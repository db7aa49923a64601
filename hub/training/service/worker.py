"""`TrainingWorker`: one background thread that runs training jobs one at a time, off the request path.

Jobs live in the store (`training_jobs`), so progress survives the thread and any process can read it;
the store admits one queued-or-running job at a time, so a second submit fails fast (`TrainingBusyError`).
A job that was queued or running when the hub stopped is marked failed when the worker starts again:
nothing else would ever finish it. One hub process runs one worker.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from hub.store.ports import HubStore
from hub.store.rows import TrainingJobRow
from hub.training.errors import TrainingBusyError
from shared.errors import FleetloopError
from shared.ids import new_id

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
JobRunner = Callable[[TrainingJobRow, Progress], Any]
"""Runs one job; its result's ``summary()`` (if any) is kept in the job's details; ``version`` and
``verdict`` attributes, when present, fill `result_version` and `gate_verdict`."""

RESTART_ERROR = "the hub stopped while this job was queued or running"


def execute_job(store: HubStore, job_id: str, runner: JobRunner, *, clock: Callable[[], float] = time.time) -> \
        TrainingJobRow:
    """Run one stored job with `runner`, recording start, progress and outcome; never raises for a job's
    own failure (its error is recorded), so the caller's loop goes on."""
    job = store.update_training_job(job_id, status="running", stage="starting", progress=0.0, started_ts=clock())

    def progress(stage: str, value: float) -> None:
        store.update_training_job(job_id, stage=stage, progress=min(max(float(value), 0.0), 1.0))

    try:
        result = runner(job, progress)
    except FleetloopError as exc:
        log.warning("training job %s failed: %s", job_id, exc)
        return store.update_training_job(job_id, status="failed", error=str(exc), finished_ts=clock())
    except Exception as exc:  # a bug must not kill the worker: record it, log the traceback
        log.exception("training job %s failed unexpectedly", job_id)
        return store.update_training_job(job_id, status="failed", error=f"internal error: {type(exc).__name__}: "
                                         f"{exc}", finished_ts=clock())
    summary = result.summary() if hasattr(result, "summary") else {}
    return store.update_training_job(
        job_id, status="succeeded", stage="done", progress=1.0, finished_ts=clock(),
        result_version=getattr(result, "version", None), gate_verdict=getattr(result, "verdict", None),
        details={**job.details, **summary},
    )


class TrainingWorker:
    """A daemon thread draining a queue of job ids; `submit` stores a job and enqueues it."""

    def __init__(self, store: HubStore, runner: JobRunner, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.runner = runner
        self.clock = clock
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Fail the jobs a previous process left unfinished, then start the thread."""
        with self._lock:
            if self._thread is not None:
                return
            stale = self.store.fail_unfinished_training_jobs(error=RESTART_ERROR, ts=self.clock())
            if stale:
                log.warning("marked %d unfinished training job(s) failed: %s", len(stale), ", ".join(stale))
            self._thread = threading.Thread(target=self._loop, name="training-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the running job (a fit cannot be interrupted; the thread is a daemon past `timeout`)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)
            if thread.is_alive():
                log.warning("training worker still busy after %.0fs; leaving it to finish or die with the process",
                            timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(
        self,
        trigger: str,
        actor: str,
        reason: str,
        *,
        trigger_id: str | None = None,
        label_set_id: str | None = None,
        drift_cursor: int = 0,
        details: Mapping[str, Any] | None = None,
        job_id: str | None = None,
        created_ts: float | None = None,
    ) -> str:
        """Queue a job and return its id; TrainingBusyError when one is queued or running."""
        row = self.new_job(trigger, actor, reason, trigger_id=trigger_id, label_set_id=label_set_id,
                           drift_cursor=drift_cursor, details=details, job_id=job_id, created_ts=created_ts)
        self._queue.put(row.id)
        return row.id

    def new_job(
        self,
        trigger: str,
        actor: str,
        reason: str,
        *,
        trigger_id: str | None = None,
        label_set_id: str | None = None,
        drift_cursor: int = 0,
        details: Mapping[str, Any] | None = None,
        job_id: str | None = None,
        created_ts: float | None = None,
    ) -> TrainingJobRow:
        """Store a queued job without enqueueing it (to run it in this thread with `execute_job`).

        `created_ts` (default: the clock) is when the trigger fired: the cooldown counts from it.
        """
        row = TrainingJobRow(
            id=job_id or new_id(), status="queued", stage="queued", progress=0.0, trigger=trigger,
            trigger_id=trigger_id, actor=actor, reason=reason, label_set_id=label_set_id, result_version=None,
            gate_verdict=None, error=None, drift_cursor=drift_cursor,
            created_ts=self.clock() if created_ts is None else created_ts, started_ts=None, finished_ts=None,
            details=dict(details or {}),
        )
        created = self.store.create_training_job(row)
        if created is None:
            active = self.active_job()
            raise TrainingBusyError(
                "a training job is already " + (f"{active.status}: {active.id}" if active else "queued or running"),
                None if active is None else active.id,
            )
        return created

    def active_job(self) -> TrainingJobRow | None:
        """The queued or running job, if any."""
        for status in ("running", "queued"):
            rows = self.store.training_jobs(status=status, limit=1)
            if rows:
                return rows[0]
        return None

    def wait(self, job_id: str, *, timeout: float = 600.0, poll_s: float = 0.1) -> TrainingJobRow:
        """Block until the job has finished (or `timeout`), and return its row."""
        deadline = time.monotonic() + timeout
        while True:
            row = self.store.training_job(job_id)
            if row is None:
                raise KeyError(job_id)
            if not row.active or time.monotonic() >= deadline:
                return row
            time.sleep(poll_s)

    def _loop(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            try:
                execute_job(self.store, job_id, self.runner, clock=self.clock)
            except Exception:  # the store itself failed: log, keep serving the queue
                log.exception("could not record training job %s", job_id)
