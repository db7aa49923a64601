"""Simulated technicians on the product's own paths, for the demo and ``fleetloop dev up``.

`sim.desk.TechnicianDesk` decides what each simulated technician labels and how; this module carries the
labels the way people do, through nothing a real technician lacks:

- at the hub, its HTTP API with a technician token (`ApiInbox`): ``GET /queue`` for what to label next,
  ``POST /annotations/batch`` for the verdicts (with each annotation's own id, so a retry is harmless);
- at the machine, the agent's own database (`MachineLogs`): the on-site technician annotates with
  ``fleetloop agent annotate``'s code path (`agent.app.record_annotation`): stored in that database and queued in
  the agent's outbox, which the running agent publishes over MQTT. `technician_desk`'s on-site technician keeps a
  maintenance log (`sim.maintenance.MaintenanceLog`): failures and inspections as time ranges, which the hub turns
  into labels on the windows they cover, asking the device for the windows it kept (``upload_traces`` with a
  range). `MachineLogs.logged` also reads the gateway's prediction log, for a technician who labels window by window.

`technician_desk` builds the desk of a fleet of simulated agents from these, at a person's pace: each queue
technician answers `QUEUE_PER_HOUR` items per hour of the machines' clock (a simulated machine reads once a second,
so at a replay rate of 100 an hour passes in 36 s), wrong `ERROR_RATES` of the time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.app import record_annotation
from agent.db import AgentDB
from fleetloop.fleet.logs import AgentLogs
from hub.app.client import HubClient
from shared.messages import Annotation
from shared.topics import DEFAULT_PREFIX, Topics
from shared.wire import to_dict
from sim.desk import LoggedPrediction, TechnicianDesk, site_staff
from sim.technicians import GroundTruth, SimDevice

__all__ = ["ApiInbox", "MachineLogs", "QueuedPrediction", "technician_desk"]

QUEUE_LIMIT = 500  # the most GET /queue returns in one answer
BATCH = 500  # the most POST /annotations/batch takes
QUEUE_PER_HOUR = 60.0  # queue items one site's technician answers per hour of the machines' clock
ERROR_RATES = (0.03, 0.05)  # how often each site's queue technician is wrong (dealt over the sorted sites)

# What POST /annotations takes of an `Annotation` (the hub fills in the device's model version and the time).
_CREATE_FIELDS = {"annotation_id", "trace_id", "device_id", "start_ts", "end_ts", "label", "fault_type",
                  "technician_id", "confidence", "signal", "note"}


@dataclass(frozen=True)
class QueuedPrediction:
    """An item of the hub's labelling queue (``GET /queue``): what a technician needs of it."""

    trace_id: str
    device_id: str
    ts: float
    window_end: float
    model_version: str | None
    reason: str


class ApiInbox:
    """`sim.desk.HubInbox` over the hub's HTTP API, as a technician (`token` must carry the technician role).

    With `devices`, the queue is read device by device (``?device_id=``), so a busy device's backlog does not
    hide a quiet one's behind the answer's `QUEUE_LIMIT`. Refusals and outages raise `hub.errors` exceptions.
    """

    def __init__(self, url: str, token: str, *, devices: Sequence[str] = (), limit: int = QUEUE_LIMIT,
                 client: HubClient | None = None) -> None:
        self.hub = client if client is not None else HubClient(url, token)
        self.devices = list(devices)
        self.limit = limit

    def close(self) -> None:
        self.hub.close()

    def unlabelled(self, since: float) -> list[QueuedPrediction]:
        items: list[dict[str, Any]] = []
        scopes: list[str | None] = [*self.devices] or [None]
        for device_id in scopes:
            items += self.hub.get("/queue", since=since, limit=self.limit, device_id=device_id)
        return [QueuedPrediction(i["trace_id"], i["device_id"], i["ts"], i["window_end"], i["model_version"],
                                 i["reason"]) for i in items]

    def submit(self, annotations: Sequence[Annotation], now: float) -> None:
        """``POST /annotations/batch``, `BATCH` at a time (each checked as ``POST /annotations`` checks one)."""
        items = [{k: v for k, v in to_dict(a).items() if k in _CREATE_FIELDS and v is not None} for a in annotations]
        for i in range(0, len(items), BATCH):
            self.hub.post("/annotations/batch", {"annotations": items[i : i + BATCH]})


class MachineLogs:
    """`sim.desk.DeviceLogs` at the machines: the agents' logs under ``root/<device_id>/agent.db`` read while they
    run, and annotations recorded there as ``fleetloop agent annotate`` records them (one database handle per
    device, from the desk's one thread; `close` them at the end)."""

    def __init__(self, root: Path, prefix: str = DEFAULT_PREFIX) -> None:
        self.logs = AgentLogs(root)
        self.topics = Topics(prefix)
        self._dbs: dict[str, AgentDB] = {}
        self._waiting: list[Annotation] = []

    def logged(self, device_id: str, *, after_row: int, until_ts: float) -> list[LoggedPrediction]:
        return self.logs.logged(device_id, after_row=after_row, until_ts=until_ts)

    def record(self, annotations: Sequence[Annotation]) -> None:
        """Annotate at the machines; a machine whose agent has not made its database yet gets its annotations once
        it has (the technician waits for the gateway: never a database of their own making)."""
        self._waiting += annotations
        waiting, self._waiting = self._waiting, []
        for a in waiting:
            db = self._dbs.get(a.device_id)
            if db is None:
                path = self.logs.path(a.device_id)
                if not path.exists():
                    self._waiting.append(a)
                    continue
                db = self._dbs[a.device_id] = AgentDB(path)
            record_annotation(db, self.topics, a)

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()
        self._dbs.clear()


def technician_desk(devices: Mapping[str, SimDevice], *, hub_url: str, token: str, agents_dir: Path,
                    prefix: str = DEFAULT_PREFIX, horizon: int, since: float,
                    truth: GroundTruth | None = None, error_rates: Sequence[float] = ERROR_RATES,
                    queue_per_hour: float = QUEUE_PER_HOUR) -> tuple[TechnicianDesk, ApiInbox, MachineLogs]:
    """The site technicians at the hub's queue (over HTTP with `token`, `queue_per_hour` items each per hour of the
    machines' clock) and one on-site technician keeping a maintenance log at the agents under `agents_dir`, for
    `devices`; close the inbox and the logs after the desk's last run."""
    inbox = ApiInbox(hub_url, token, devices=sorted(devices))
    logs = MachineLogs(agents_dir, prefix)
    staff = site_staff(devices, horizon=horizon, truth=truth, error_rates=error_rates, maintenance_log=True)
    rate = max((1.0 / d.period for d in devices.values()), default=1.0)  # machine seconds per wall second
    desk = TechnicianDesk(dict(devices), inbox=inbox, staff=staff, logs=logs, since=since,
                          queue_per_s=queue_per_hour * rate / 3600.0)
    return desk, inbox, logs
