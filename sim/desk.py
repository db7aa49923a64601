"""The technicians' desk: simulated technicians working a hub's labelling queue and the devices' own logs.

At the hub, one technician per site works the labelling queue (anomalies, low-confidence and random samples), on a
budget of items per second if given; on site, another works at the machine (into the device's own log, which sends
it to the hub): either labelling the windows that only the devices logged (their log says which windows they
reported when they scored them), or, as people do, keeping a maintenance log of time ranges (`sim.maintenance`);
the hub then asks the devices to upload those windows (its trace requests). Every verdict comes from the
simulator's ground truth (`SimulatedTechnician`), with each technician's delay and noise.

The desk touches nothing itself: the hub's side is a `HubInbox` and the devices' logs are a `DeviceLogs`, two
small interfaces (``fleetloop.technicians.ApiInbox`` and ``fleetloop.technicians.MachineLogs`` are the product
paths the demo and ``fleetloop dev up`` use: the hub's HTTP API with a technician token, and the agent's
at-machine annotation; tests pass in-memory twins). numpy only, like the rest of `sim`.

>>> from sim.machine import MachineConfig
>>> devices = {"d1": SimDevice("d1", seed=3, config=MachineConfig(site="site-a"), start_ts=0.0, rate=10.0)}
>>> class Inbox:
...     def __init__(self): self.notes = []
...     def unlabelled(self, since): return [LoggedPrediction(0, "t1", "d1", 5.0, 4.9, "v1", "random")]
...     def submit(self, annotations, now): self.notes += annotations
>>> inbox = Inbox()
>>> desk = TechnicianDesk(devices, inbox=inbox, staff=site_staff(devices, horizon=100))
>>> desk.run(now=10.0), inbox.notes[0].label, desk.tally.hub_queue
(1, 'no_fault', 1)
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from shared.messages import Annotation
from sim.maintenance import MaintenanceLog
from sim.technicians import GroundTruth, PredictionLike, SimDevice, SimulatedTechnician

__all__ = ["DeskTally", "DeviceLogs", "HubInbox", "LoggedPrediction", "Staff", "TechnicianDesk", "site_staff"]


class HubInbox(Protocol):
    """The hub as the desk sees it: its labelling queue, and where annotations go."""

    def unlabelled(self, since: float) -> Sequence[PredictionLike]:
        """Queued predictions (anomaly, low-confidence, random) made at ``ts >= since`` without a label."""
        ...

    def submit(self, annotations: Sequence[Annotation], now: float) -> None:
        """Hand annotations to the hub (idempotent by annotation id)."""
        ...


@dataclass(frozen=True)
class LoggedPrediction:
    """A prediction as a device logged it; `row_id` grows with every prediction of that device. `reported` says
    why the device sent it to the hub when it scored it (anomaly, random, low_confidence), None: it kept it."""

    row_id: int
    trace_id: str
    device_id: str
    ts: float
    window_end: float
    model_version: str | None
    reported: str | None = None


class DeviceLogs(Protocol):
    """The devices' own prediction logs, at the machine: the technician reads the gateway's log and annotates
    there (the device sends the annotations to the hub)."""

    def logged(self, device_id: str, *, after_row: int, until_ts: float) -> list[LoggedPrediction]:
        """Predictions of `device_id` with ``row_id > after_row`` and ``ts <= until_ts``, in row order;
        an empty list while the device has no log yet."""
        ...

    def record(self, annotations: Sequence[Annotation]) -> None:
        """Annotate at the machine: each into its device's own log, queued for the hub."""
        ...


@dataclass(frozen=True)
class Staff:
    """Who labels: one technician per site at the hub's queue, and (optionally) one on site: either labelling
    every window the devices kept (`on_site`), or writing a maintenance log of time ranges (`log`), as people do."""

    by_site: Mapping[str, SimulatedTechnician]
    on_site: SimulatedTechnician | None = None
    log: MaintenanceLog | None = None


def site_staff(devices: Mapping[str, SimDevice], *, horizon: int, truth: GroundTruth | None = None,
               queue_delay_s: float = 1.0, on_site_delay_s: float = 2.0,
               error_rates: Sequence[float] = (0.0, 0.02), seed: int = 1, maintenance_log: bool = False) -> Staff:
    """The demo's staff: technician ``tech-<site>`` per site (error rates dealt in turn over the sorted sites)
    at the queue after `queue_delay_s`, and ``tech-on-site`` after `on_site_delay_s`: exact on every window the
    devices kept, or with `maintenance_log` a `MaintenanceLog` of failures and inspections (its own noise).

    They share one `GroundTruth` (one cached replay per device).
    """
    truth = truth if truth is not None else GroundTruth()
    sites = sorted({d.config.site for d in devices.values()})
    by_site = {
        site: SimulatedTechnician(f"tech-{site}", delay_s=queue_delay_s, error_rate=error_rates[i % len(error_rates)],
                                  seed=seed + i, fleet=devices, horizon=horizon, truth=truth)
        for i, site in enumerate(sites)
    }
    if maintenance_log:
        return Staff(by_site, log=MaintenanceLog("tech-on-site", fleet=dict(devices), horizon=horizon,
                                                 seed=seed + len(sites), delay_s=on_site_delay_s, truth=truth))
    on_site = SimulatedTechnician("tech-on-site", delay_s=on_site_delay_s, error_rate=0.0, seed=seed + len(sites),
                                  fleet=devices, horizon=horizon, truth=truth)
    return Staff(by_site, on_site)


@dataclass(frozen=True)
class DeskTally:
    """What the desk did so far: annotations from the hub's queue, on site, in all, and the faults among them."""

    hub_queue: int = 0
    on_site: int = 0
    annotations: int = 0
    faults: int = 0


@dataclass
class TechnicianDesk:
    """Simulated technicians at work; call `run(now)` periodically (e.g. from a ``hub.app.service.Periodic``).

    `since` leaves older queue entries alone (a hub reused from another run), as does a device's `start_ts`
    (windows of an earlier run of its machine, see `restarted`); `settle_s` is how old a device's logged
    prediction must be before the on-site technician looks. Without `logs` nobody works on site. With
    `queue_per_s`, each site's technician answers at most that many queue items per (wall) second since `since`,
    in the hub's queue order, taking devices in turn (a person's budget; None: the whole queue). Thread-safe: one
    run at a time.
    """

    devices: Mapping[str, SimDevice]
    inbox: HubInbox
    staff: Staff
    logs: DeviceLogs | None = None
    since: float = 0.0
    settle_s: float = 2.0
    queue_per_s: float | None = None
    _answered: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _cursors: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _tally: DeskTally = field(default_factory=DeskTally, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def tally(self) -> DeskTally:
        return self._tally

    def restarted(self, device: SimDevice) -> None:
        """`device`'s machine started over (a new clock origin, other drifts): its windows are judged against the
        new run from now on, and those of the earlier run are left alone."""
        with self._lock:
            self.devices = {**self.devices, device.device_id: device}
            for technician in (*self.staff.by_site.values(), self.staff.on_site):
                if technician is not None and device.device_id in technician.fleet:
                    technician.fleet[device.device_id] = device
            if self.staff.log is not None and device.device_id in self.staff.log.fleet:
                self.staff.log.restarted(device)

    def _current(self, p: PredictionLike) -> bool:
        """Whether `p` is a window of the desk's device as it runs now (not another device's, not an earlier run)."""
        device = self.devices.get(p.device_id)
        return device is not None and p.window_end >= device.start_ts

    def run(self, now: float) -> int:
        """Label what is due at `now`; returns how many annotations were made (to the hub, or at the machine)."""
        with self._lock:
            notes: list[Annotation] = []
            queued = _in_turn([p for p in self.inbox.unlabelled(self.since) if self._current(p)])
            for p in queued:
                site = self.devices[p.device_id].config.site
                technician = self.staff.by_site.get(site)
                if technician is None:
                    continue
                budget = None if self.queue_per_s is None else self.queue_per_s * (now - self.since)
                if budget is not None and self._answered.get(site, 0) >= budget:
                    continue
                answer = technician.label([p], now)
                self._answered[site] = self._answered.get(site, 0) + len(answer)
                notes += answer
            if notes:
                self.inbox.submit(notes, now)
            from_queue, at_machine = len(notes), []
            if self.logs is not None and self.staff.on_site is not None:
                until = now - max(self.settle_s, self.staff.on_site.delay_s)  # read only what is due: never skipped
                for device in self.devices:
                    rows = self.logs.logged(device, after_row=self._cursors.get(device, 0), until_ts=until)
                    if not rows:
                        continue
                    self._cursors[device] = rows[-1].row_id
                    only_logged = [r for r in rows if r.reported is None and self._current(r)]
                    at_machine += self.staff.on_site.label(only_logged, now)
            if self.logs is not None and self.staff.log is not None:
                at_machine += self.staff.log.report(now)
            if at_machine:
                assert self.logs is not None
                self.logs.record(at_machine)
            notes += at_machine
            t = self._tally
            self._tally = replace(t, hub_queue=t.hub_queue + from_queue, on_site=t.on_site + len(at_machine),
                                  annotations=t.annotations + len(notes),
                                  faults=t.faults + sum(n.label == "fault" for n in notes))
            return len(notes)


def _in_turn(queued: Sequence[PredictionLike]) -> list[PredictionLike]:
    """The queue with devices taken in turn, each device's items in the hub's order."""
    by_device: dict[str, list[PredictionLike]] = {}
    for p in queued:
        by_device.setdefault(p.device_id, []).append(p)
    lists = list(by_device.values())
    return [q[i] for i in range(max(map(len, lists), default=0)) for q in lists if i < len(q)]
