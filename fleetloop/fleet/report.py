"""Running a fleet to the end: `supervise` starts it, reports progress, stops it and returns a `FleetReport`.

`fleetloop sim fleet` and `fleetloop demo` are thin CLIs around `supervise`.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from fleetloop.fleet.monitor import FleetMonitor, FleetSnapshot
from fleetloop.fleet.plan import DeviceSpec
from fleetloop.fleet.processes import Fleet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FleetReport:
    """How a fleet run ended: what the hub side saw and what each agent said when it stopped."""

    snapshot: FleetSnapshot
    specs: tuple[DeviceSpec, ...]
    exit_codes: dict[str, int | None]
    pids: dict[str, int | None]
    agent_counters: dict[str, dict[str, Any] | None]
    elapsed_s: float
    stopped_by: str  # "duration", "exited" or "interrupted"
    peak_predictions_per_s: float

    @property
    def ok(self) -> bool:
        return all(code == 0 for code in self.exit_codes.values())

    def table(self) -> str:
        head = ("device", "cohort", "windows", "anomalies", "samples", "model", "online", "exit")
        rows = [head]
        by_id = {d.device_id: d for d in self.snapshot.devices}
        for spec in self.specs:
            t = by_id[spec.device_id]
            rows.append((spec.device_id, spec.cohort, str(t.windows), str(t.anomalies), str(t.samples),
                         t.model_version or "-", "yes" if t.ever_online else "never",
                         str(self.exit_codes.get(spec.device_id))))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)

    def to_json(self) -> dict[str, Any]:
        s = self.snapshot
        return {
            "elapsed_s": round(self.elapsed_s, 2), "stopped_by": self.stopped_by, "ok": self.ok,
            "devices_total": len(s.devices), "devices_ever_online": s.ever_online,
            "peak_predictions_per_s": round(self.peak_predictions_per_s, 2),
            "windows": s.total("windows"), "anomalies": s.total("anomalies"), "samples": s.total("samples"),
            "rejected_messages": s.rejected,
            "devices": {
                t.device_id: {"ever_online": t.ever_online, "online": t.online, "windows": t.windows,
                              "anomalies": t.anomalies, "samples": t.samples, "model_version": t.model_version,
                              "site": t.site, "asset_type": t.asset_type, "model_events": t.model_events,
                              "exit_code": self.exit_codes.get(t.device_id),
                              "pid": self.pids.get(t.device_id), "agent": self.agent_counters.get(t.device_id)}
                for t in s.devices
            },
        }


def supervise(fleet: Fleet, monitor: FleetMonitor, *, duration_s: float | None, progress_every_s: float = 5.0,
              progress: Callable[[str], None] = log.info) -> FleetReport:
    """Start the fleet, report progress until `duration_s`, every agent exits or Ctrl-C, then stop it all."""
    started = time.monotonic()
    stopped_by, peak = "duration", 0.0
    reported: set[str] = set()
    next_progress = started + progress_every_s
    try:
        fleet.start()
        while duration_s is None or time.monotonic() - started < duration_s:
            time.sleep(0.1)
            now = time.monotonic()
            if now >= next_progress:
                snap = monitor.snapshot()
                peak = max(peak, snap.predictions_per_s)
                progress(snap.progress_line(now - started))
                next_progress += progress_every_s
            for device, code in fleet.exit_codes().items():
                if code not in (None, 0) and device not in reported:
                    reported.add(device)
                    log.error("%s exited with code %s; its log ends:\n%s", device, code,
                              fleet.agents[device].log_tail())
            if not fleet.running():
                stopped_by = "exited"
                break
    except KeyboardInterrupt:
        stopped_by = "interrupted"
        log.info("interrupted: stopping the fleet")
    finally:
        fleet.stop()
        if not monitor.wait_offline(3.0):
            log.warning("not every device said offline after stopping")
    elapsed = time.monotonic() - started
    snap = monitor.snapshot()
    return FleetReport(snap, tuple(fleet.specs), fleet.exit_codes(), {d: a.pid for d, a in fleet.agents.items()},
                       {d: a.counters() for d, a in fleet.agents.items()}, elapsed, stopped_by,
                       max(peak, snap.predictions_per_s))


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM and SIGHUP like Ctrl-C inside the block, so a stopped parent stops its fleet cleanly too.

    The agents run in process groups of their own and do not see a closing terminal's SIGHUP themselves.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
