"""`hub.app.health.assess`: the verdict of ``/health`` from what the parts report, with states named."""

from __future__ import annotations

from hub.app.health import ConnectionState, JobState, assess

NOW = 1_700_000_000.0
UP = ConnectionState(True, NOW - 100)
DOWN = ConnectionState(False, NOW - 5, "disconnected: unspecified error")


def test_everything_up_is_ok() -> None:
    job = JobState(interval_s=30, started_at=NOW - 100, runs=3, last_run=NOW - 10, last_success=NOW - 10)
    report = assess(store_error=None, counts={"devices": 2}, connections={"ingest": UP, "commands": UP},
                    jobs={"drift": job}, now=NOW)
    assert report.status == "ok" and report.problems == []
    assert report.jobs["drift"]["state"] == "ok" and report.store["counts"] == {"devices": 2}


def test_a_lost_broker_a_failing_job_and_an_overdue_one_are_degraded_and_named() -> None:
    failing = JobState(interval_s=30, started_at=NOW - 100, runs=1, failures=2, consecutive_failures=2,
                       last_run=NOW - 10, last_error="StoreError('locked')")
    stuck = JobState(interval_s=30, started_at=NOW - 1000, runs=0)
    report = assess(store_error=None, counts={}, connections={"ingest": DOWN, "commands": UP},
                    jobs={"drift": failing, "rollouts": stuck}, now=NOW)
    assert report.status == "degraded"
    assert report.problems == ["broker_disconnected:ingest", "job_failing:drift", "job_overdue:rollouts"]
    assert report.broker["status"] == "disconnected" and report.broker["commands"]["connected"] is True


def test_an_unreadable_store_fails() -> None:
    report = assess(store_error="no such table", counts=None, connections={}, jobs={}, now=NOW)
    assert report.status == "failed" and report.problems == ["store_unavailable"]
    assert report.store == {"status": "failed", "error": "no such table", "counts": {}}
