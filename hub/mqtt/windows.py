"""The job that asks devices for raw sensor windows: on demand (a technician opens a trace), for the alarm
window each open incident shows, and for the newest windows of the random slice (the unbiased field readings the
hub learns feature set 2's regime statistics from, `hub.training`); requests are re-sent until answered, given up
after a few asks, and pruned after the retention period."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from hub.store.ports import HubStore
from shared.messages import Command

log = logging.getLogger(__name__)

MAX_PER_COMMAND = 100
DAY_S = 86400.0
INCIDENTS_PER_PASS = 500


class WindowRequester:
    """Sends ``upload_windows`` commands for the raw windows the hub wants (`hub.store.sqlite.windows`)."""

    def __init__(self, store: HubStore, send: Callable[[str, Command], bool], *, retry_s: float = 120.0,
                 max_asks: int = 3, retention_s: float = 30 * 86400.0, learn_per_pass: int = 0,
                 learn_lookback_s: float = 86400.0, learn_per_day: int = 500,
                 clock: Callable[[], float] = time.time) -> None:
        """`learn_per_pass`: random-slice windows asked for at most each pass (0: none), the newest first among
        those scored within `learn_lookback_s` (and the retention period): a device keeps only its newest sampled
        windows (`AgentSettings.raw_windows_keep`), so older ones are mostly gone, and the bound keeps the pass's
        scan of the predictions short. `learn_per_day`: at most this many in any 24 hours (counted since this job
        started), so a large fleet's random slice does not fill the hub's disk with windows kept for
        `retention_s`: regimes are learned from a few hundred (`hub.training.regimes`; 37 found C-MAPSS FD002's six)."""
        self.store = store
        self.send = send
        self.retry_s = retry_s
        self.max_asks = max_asks
        self.retention_s = retention_s
        self.learn_per_pass = learn_per_pass
        self.learn_lookback_s = learn_lookback_s
        self.learn_per_day = learn_per_day
        self._learn_asked: deque[float] = deque()  # when each random-slice window was asked for, the last 24 h
        self.clock = clock
        self.requested = 0

    def request(self, device_id: str, trace_id: str) -> None:
        """Ask now for one trace's window (a request already made is left to `run`'s retries)."""
        now = self.clock()
        if self.store.request_raw_windows([(trace_id, device_id)], ts=now):
            self._ask({device_id: [trace_id]}, now)

    def run(self, now: float) -> int:
        """One pass: request the window each active incident shows and up to `learn_per_pass` of the random
        slice's not asked for yet, re-send unanswered requests, give up on the ones asked `max_asks` times, prune
        old rows (first). Returns how many trace ids were asked for."""
        self.store.prune_raw_windows(before_ts=now - self.retention_s)
        incidents = self.store.active_incidents()[:INCIDENTS_PER_PASS]
        wanted = []
        for incident in incidents:
            windows = self.store.incident_windows(incident.id)
            if windows:
                wanted.append((max(windows, key=lambda w: w.score).trace_id, incident.device_id))
        while self._learn_asked and self._learn_asked[0] <= now - DAY_S:
            self._learn_asked.popleft()
        budget = min(self.learn_per_pass, self.learn_per_day - len(self._learn_asked))
        if budget > 0:
            since = now - min(self.retention_s, self.learn_lookback_s)
            learn = self.store.random_windows_unasked(since=since, limit=budget)
            self._learn_asked.extend(now for _ in learn)
            wanted += learn
        self.store.request_raw_windows(wanted, ts=now)
        self.store.expire_raw_window_requests(max_asks=self.max_asks, asked_before=now - self.retry_s, ts=now)
        by_device: dict[str, list[str]] = {}
        for row in self.store.due_raw_windows(asked_before=now - self.retry_s):
            by_device.setdefault(row.device_id, []).append(row.trace_id)
        return self._ask(by_device, now)

    def _ask(self, by_device: dict[str, list[str]], now: float) -> int:
        asked = 0
        for device_id, trace_ids in by_device.items():
            for i in range(0, len(trace_ids), MAX_PER_COMMAND):
                chunk = trace_ids[i : i + MAX_PER_COMMAND]
                if self.send(device_id, Command(ts=now, cmd="upload_windows", trace_ids=chunk)):
                    self.store.mark_raw_windows_asked(chunk, ts=now)
                    asked += len(chunk)
        if asked:
            log.info("asked %d device(s) for %d raw window(s)", len(by_device), asked)
        self.requested += asked
        return asked
