"""Training rows in the real store: one active job, race-free version names, a first-wins eval slice."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from hub.store.ports import HubStore
from hub.store.rows import TrainingJobRow
from shared.errors import StoreError


def job(job_id: str, created_ts: float = 100.0) -> TrainingJobRow:
    return TrainingJobRow(
        id=job_id, status="queued", stage="queued", progress=0.0, trigger="manual", trigger_id="trigger-1",
        actor="operator", reason="test", label_set_id=None, result_version=None, gate_verdict=None, error=None,
        drift_cursor=3, created_ts=created_ts, started_ts=None, finished_ts=None, details={"k": 1},
    )


def test_one_job_at_a_time(store: HubStore) -> None:
    first = store.create_training_job(job("j1"))
    assert first == job("j1")
    assert store.create_training_job(job("j2")) is None  # j1 is queued
    store.update_training_job("j1", status="running", stage="train", progress=0.4, started_ts=101.0)
    assert store.create_training_job(job("j2")) is None  # and now running
    done = store.update_training_job("j1", status="failed", error="boom", finished_ts=102.0)
    assert (done.status, done.error, done.progress, done.stage) == ("failed", "boom", 0.4, "train")
    assert store.create_training_job(job("j2", 200.0)) is not None
    assert [j.id for j in store.training_jobs()] == ["j2", "j1"]
    assert [j.id for j in store.training_jobs(status="failed")] == ["j1"]


def test_updates_are_checked(store: HubStore) -> None:
    store.create_training_job(job("j1"))
    with pytest.raises(StoreError, match="cannot update"):
        store.update_training_job("j1", actor="someone else")
    with pytest.raises(StoreError, match="unknown job status"):
        store.update_training_job("j1", status="paused")
    with pytest.raises(StoreError, match="no training job"):
        store.update_training_job("nope", stage="x")
    row = store.update_training_job("j1", details={"a": [1, 2]})
    assert row.details == {"a": [1, 2]}


def test_unfinished_jobs_are_failed_after_a_restart(store: HubStore) -> None:
    store.create_training_job(job("j1"))
    assert store.fail_unfinished_training_jobs(error="restarted", ts=5.0) == ["j1"]
    row = store.training_job("j1")
    assert row is not None and (row.status, row.error, row.finished_ts) == ("failed", "restarted", 5.0)
    assert store.fail_unfinished_training_jobs(error="restarted", ts=6.0) == []


def test_version_names_are_the_next_integer_and_never_handed_out_twice(store: HubStore) -> None:
    store.create_training_job(job("j1"))
    assert store.reserve_model_version("j1") == "v1"
    assert store.training_job("j1").result_version == "v1"  # type: ignore[union-attr]
    names: list[str] = []
    lock = threading.Lock()

    def reserve() -> None:
        name = store.reserve_model_version("j1")
        with lock:
            names.append(name)

    threads = [threading.Thread(target=reserve) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(names, key=lambda v: int(v[1:])) == [f"v{i}" for i in range(2, 10)]
    store.update_training_job("j1", status="failed")
    store.create_training_job(replace(job("j2"), result_version=None))
    assert store.reserve_model_version("j2") == "v10"  # after the highest reserved (j1 holds v9), never reused
    with pytest.raises(StoreError, match="no training job"):
        store.reserve_model_version("nope")


def test_the_eval_slice_keeps_the_first_assignment(store: HubStore) -> None:
    assert store.freeze_eval_slice({"a": True, "b": False}, ts=1.0) == {"a": True, "b": False}
    assert store.freeze_eval_slice({"a": False, "b": True, "c": True}, ts=2.0) == {"a": True, "b": False, "c": True}
    assert store.eval_slice() == [("a", 1.0), ("c", 2.0)]
    assert store.eval_slice_assignments(["c", "zz"]) == {"c": True}
