"""`Leadership`: which of several hub processes runs the background jobs (drift, triggers, rollouts, trace
requests, gaps, retention, incidents), through a lease in the shared store (`LeaseStore`).

Every process renews its claim every ``ttl_s / 3``; the store grants the lease to one holder at a time. A
process counts itself leader only until its last successful renewal plus ``ttl_s`` minus a margin, measured on
its own monotonic clock, so a leader cut off from the database stops running jobs before another takes over. A
killed leader is replaced within ``ttl_s``; a stopped one releases the lease and is replaced at the next renewal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from hub.store.ports import LeaseStore

log = logging.getLogger(__name__)

JOBS_LEASE = "hub-jobs"


class Leadership:
    """`start()`, `is_leader()`, `stop()`. `holder` names this process (unique per process)."""

    def __init__(self, store: LeaseStore, holder: str, *, ttl_s: float = 30.0, name: str = JOBS_LEASE,
                 clock: Callable[[], float] = time.time) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")
        self.store = store
        self.holder = holder
        self.ttl_s = ttl_s
        self.name = name
        self.clock = clock
        self.changes = 0  # times this process became leader
        self._until = 0.0  # monotonic time until which this process may act as leader
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{name}", daemon=True)

    def is_leader(self) -> bool:
        with self._lock:
            return time.monotonic() < self._until

    def renew(self) -> bool:
        """One attempt to take or keep the lease; whether this process leads now."""
        asked = time.monotonic()
        try:
            held = self.store.acquire_lease(self.name, self.holder, ttl_s=self.ttl_s, now=self.clock())
        except Exception as exc:  # the store is down: lead on only until the current lease would run out
            log.warning("lease %s: cannot renew (%s)", self.name, exc)
            return self.is_leader()
        with self._lock:
            was = time.monotonic() < self._until
            # Margin: a renewal counts from when it was asked, less a tenth of the ttl for clock skew between hosts.
            self._until = asked + 0.9 * self.ttl_s if held else 0.0
        if held and not was:
            self.changes += 1
            log.info("lease %s: %s now runs the hub's background jobs", self.name, self.holder)
        elif was and not held:
            log.warning("lease %s: %s lost the lease to another process", self.name, self.holder)
        return held

    def start(self) -> None:
        self.renew()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        with self._lock:
            was, self._until = time.monotonic() < self._until, 0.0
        if was:
            try:
                self.store.release_lease(self.name, self.holder)
            except Exception as exc:  # the lease expires on its own
                log.warning("lease %s: cannot release (%s)", self.name, exc)

    def _loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            self.renew()
