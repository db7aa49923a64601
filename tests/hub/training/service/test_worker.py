"""The training worker on a real store: one job at a time off the caller's thread, progress as it goes,
failures recorded, unfinished jobs failed after a restart. The job itself is a small function here."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hub.store.rows import TrainingJobRow
from hub.store.sqlite import SqliteHubStore
from hub.training.errors import RetrainError, TrainingBusyError
from hub.training.service.worker import RESTART_ERROR, TrainingWorker


@dataclass
class Result:
    version: str = "v7"
    verdict: str = "pass"

    def summary(self) -> dict[str, Any]:
        return {"version": self.version, "passed": True}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteHubStore]:
    s = SqliteHubStore(tmp_path / "hub.db")
    yield s
    s.close()


def _worker(store: SqliteHubStore, runner: Callable[..., Any]) -> TrainingWorker:
    worker = TrainingWorker(store, runner, clock=lambda: 1000.0)
    worker.start()
    return worker


def test_a_job_runs_in_the_background_and_reports_progress(store: SqliteHubStore) -> None:
    release, at_train = threading.Event(), threading.Event()
    callers: list[str] = []

    def runner(job: TrainingJobRow, progress: Callable[[str, float], None]) -> Result:
        callers.append(threading.current_thread().name)
        progress("train", 0.4)
        at_train.set()
        assert release.wait(10)
        return Result()

    worker = _worker(store, runner)
    try:
        job_id = worker.submit("manual", "operator:ana", "why not", trigger_id="trigger-9", label_set_id="ls-1",
                               details={"trigger": {"kind": "manual"}})
        assert at_train.wait(10)
        running = store.training_job(job_id)
        assert running is not None
        assert (running.status, running.stage, running.progress, running.started_ts) == ("running", "train", 0.4,
                                                                                         1000.0)
        with pytest.raises(TrainingBusyError, match=f"already running: {job_id}") as busy:
            worker.submit("manual", "operator:bob", "me too")
        assert busy.value.job_id == job_id
        release.set()
        done = worker.wait(job_id, timeout=10)
    finally:
        release.set()
        worker.stop()
    assert callers == ["training-worker"]
    assert (done.status, done.stage, done.progress, done.result_version, done.gate_verdict) == (
        "succeeded", "done", 1.0, "v7", "pass")
    assert done.details == {"trigger": {"kind": "manual"}, "version": "v7", "passed": True}
    assert (done.trigger, done.trigger_id, done.actor, done.label_set_id) == ("manual", "trigger-9", "operator:ana",
                                                                              "ls-1")
    assert not worker.running


@pytest.mark.parametrize(
    ("error", "message"),
    [(RetrainError("no active model"), "no active model"), (ValueError("oops"), "internal error: ValueError: oops")],
)
def test_a_failing_job_is_recorded_and_the_worker_goes_on(store: SqliteHubStore, error: Exception,
                                                          message: str) -> None:
    calls = 0

    def runner(job: TrainingJobRow, progress: Callable[[str, float], None]) -> Result:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise error
        return Result()

    worker = _worker(store, runner)
    try:
        failed = worker.wait(worker.submit("drift", "hub:triggers", "drift"), timeout=10)
        ok = worker.wait(worker.submit("labels", "hub:triggers", "labels"), timeout=10)
    finally:
        worker.stop()
    assert (failed.status, failed.error, failed.finished_ts) == ("failed", message, 1000.0)
    assert ok.status == "succeeded"


def test_unfinished_jobs_of_a_previous_process_are_failed_on_start(store: SqliteHubStore) -> None:
    leftover = TrainingWorker(store, lambda job, progress: Result()).new_job("manual", "a", "b")  # never run
    worker = _worker(store, lambda job, progress: Result())
    try:
        row = store.training_job(leftover.id)
        assert row is not None and (row.status, row.error) == ("failed", RESTART_ERROR)
        assert worker.wait(worker.submit("manual", "a", "b"), timeout=10).status == "succeeded"
    finally:
        worker.stop()


def test_stop_waits_for_the_running_job(store: SqliteHubStore) -> None:
    def runner(job: TrainingJobRow, progress: Callable[[str, float], None]) -> Result:
        time.sleep(0.2)
        return Result()

    worker = _worker(store, runner)
    job_id = worker.submit("manual", "a", "b")
    time.sleep(0.05)
    worker.stop(timeout=10)
    row = store.training_job(job_id)
    assert row is not None and row.status == "succeeded"
