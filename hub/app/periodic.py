"""`Periodic`: a task run every few seconds in a thread of its own, its failures counted for ``/health``.

A module of its own, light (the standard library and `hub.app.health`): tools that only need the loop, such as
``fleetloop dev up``'s simulated technicians, do not load the whole hub with it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from hub.app.health import JobState

__all__ = ["Periodic"]

log = logging.getLogger(__name__)


class Periodic:
    """Runs `task(now)` every `interval_s` seconds in a daemon thread; an exception is logged, never fatal.

    With a `gate` (`hub.app.leader.Leadership.is_leader`), a tick runs the task only while the gate is open; a
    closed tick counts as an attempt on standby (another process runs the job), so ``/health`` does not call it
    overdue.
    """

    def __init__(self, name: str, interval_s: float, task: Callable[[float], object],
                 gate: Callable[[], bool] | None = None) -> None:
        self.name = name
        self.interval_s = interval_s
        self.task = task
        self.gate = gate
        self.standby = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.runs = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.started_at: float | None = None
        self.last_run: float | None = None
        self.last_success: float | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        self.started_at = time.time()
        self._thread.start()

    def state(self) -> JobState:
        """Its runs, failures and last attempt, for ``/health``."""
        return JobState(self.interval_s, self.started_at, self.runs, self.failures, self.consecutive_failures,
                        self.last_run, self.last_success, self.last_error, self.standby)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            now = self.last_run = time.time()
            self.standby = self.gate is not None and not self.gate()
            if self.standby:
                continue
            try:
                self.task(now)
                self.runs += 1
                self.consecutive_failures, self.last_success, self.last_error = 0, now, None
            except Exception as exc:  # a failed run is retried next interval
                self.failures += 1
                self.consecutive_failures += 1
                self.last_error = repr(exc)[:500]
                log.exception("%s failed", self.name)
