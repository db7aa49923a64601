"""What ``/health`` judges: the store, the hub's MQTT connections and its periodic jobs.

`HealthProbes` is where the running parts register (the ingest session and the command publisher by
`hub.app.service.HubService`, each periodic job); `assess` is the pure verdict over what they report:

- ``failed`` (HTTP 503): the store cannot be read (``store_unavailable``);
- ``degraded`` (HTTP 200, the API still answers): ``broker_disconnected:<client>`` (the hub cannot ingest or
  publish assignments), ``job_failing:<job>`` (its last run raised), ``job_overdue:<job>`` (no run for more
  than twice its interval);
- ``ok`` otherwise. An API served without the broker parts (tests, tools) has no connections to judge.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

Status = Literal["ok", "degraded", "failed"]
OVERDUE_GRACE_S = 60.0


@dataclass(frozen=True)
class ConnectionState:
    """One MQTT client of the hub: connected or not, since when, and the last reason it lost the broker."""

    connected: bool
    since: float | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class JobState:
    """One periodic job: how often it runs, its runs and failures, the last attempt and its error."""

    interval_s: float
    started_at: float | None
    runs: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_run: float | None = None
    last_success: float | None = None
    last_error: str | None = None
    standby: bool = False  # another hub process holds the jobs' lease (`hub.app.leader`)


@dataclass(frozen=True)
class HealthReport:
    status: Status
    problems: list[str]
    store: dict[str, Any]
    broker: dict[str, Any]
    jobs: dict[str, Any]


class Connection(Protocol):
    """What a hub MQTT client tells about its connection (`hub.mqtt.session.IngestSession`, `CommandPublisher`)."""

    def connection_state(self) -> ConnectionState: ...


class Job(Protocol):
    name: str

    def state(self) -> JobState: ...


class HealthProbes:
    """The parts ``/health`` looks at beyond the store, registered by whoever runs them (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: dict[str, Callable[[], ConnectionState]] = {}
        self._jobs: dict[str, Callable[[], JobState]] = {}

    def add_connection(self, name: str, connection: Connection) -> None:
        with self._lock:
            self._connections[name] = connection.connection_state

    def add_job(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.name] = job.state

    def connections(self) -> dict[str, ConnectionState]:
        with self._lock:
            probes = dict(self._connections)
        return {name: probe() for name, probe in probes.items()}

    def jobs(self) -> dict[str, JobState]:
        with self._lock:
            probes = dict(self._jobs)
        return {name: probe() for name, probe in probes.items()}


def assess(
    *, store_error: str | None, counts: dict[str, int] | None, connections: dict[str, ConnectionState],
    jobs: dict[str, JobState], now: float,
) -> HealthReport:
    """The hub's health from what its parts report (pure: `now` is passed in)."""
    problems: list[str] = []
    failed = store_error is not None
    if failed:
        problems.append("store_unavailable")
    for name, conn in sorted(connections.items()):
        if not conn.connected:
            problems.append(f"broker_disconnected:{name}")
    job_view: dict[str, Any] = {}
    for name, job in sorted(jobs.items()):
        state = "ok"
        if job.consecutive_failures:
            state = "failing"
            problems.append(f"job_failing:{name}")
        reference = job.last_run if job.last_run is not None else job.started_at
        if reference is not None and now - reference > 2 * job.interval_s + OVERDUE_GRACE_S:
            state = "overdue"
            problems.append(f"job_overdue:{name}")
        job_view[name] = {"state": state, **asdict(job)}
    status: Status = "failed" if failed else "degraded" if problems else "ok"
    broker_ok = all(c.connected for c in connections.values())
    broker: dict[str, Any] = {
        "status": "ok" if broker_ok else "disconnected",
        **{name: asdict(conn) for name, conn in sorted(connections.items())},
    }
    store: dict[str, Any] = {"status": "failed" if failed else "ok", "error": store_error, "counts": counts or {}}
    return HealthReport(status=status, problems=problems, store=store, broker=broker, jobs=job_view)
