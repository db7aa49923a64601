"""The hub as one process: ingest worker, drift scheduler, incidents and their notifications and (optionally) the
API, sharing one store."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Collection
from typing import TYPE_CHECKING

from hub.app.leader import Leadership
from hub.app.periodic import Periodic
from hub.app.settings import HubSettings
from hub.app.wiring import build_services, commands_client_id
from hub.delivery.service import GapMonitor
from hub.drift.service import DriftService
from hub.incidents.service import IncidentService, Notifier
from hub.mqtt.ingest import IngestWorker
from hub.mqtt.publisher import CommandPublisher, TraceRequester
from hub.registry.service import Registry
from hub.registry.signing import SigningKey
from hub.rollout.service import RolloutService
from hub.store import HubStore
from hub.store.retention import Pruned
from hub.training.service import TrainingService

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)


class HubService:
    """The hub's `Services` + ingest worker + periodic jobs. `start()`, `stop()`; `app()` is its HTTP API."""

    def __init__(self, settings: HubSettings, store: HubStore | None = None, *, jobs: bool = True,
                 driven: Collection[str] = ()) -> None:
        """`jobs=False`: a plain ingest worker (``hub ingest``): no periodic jobs, no training worker, no
        resync of retained assignments; the ``hub serve`` processes do those, one at a time (`leader`).
        `driven`: names of periodic jobs (``retrain-triggers``, ``rollouts``) the caller runs itself, when it
        chooses (an evaluation that steps its fleet in lockstep calls ``training.check`` and ``rollouts.tick``)."""
        self.settings = settings
        self.runs_jobs = jobs
        self.services = services = build_services(settings, store=store, client_id=commands_client_id(settings),
                                                   check_artifacts=True)
        assert services.commands is not None and services.traces is not None and services.key is not None
        assert services.registry is not None and services.drift is not None
        assert services.rollouts is not None and services.training is not None and services.incidents is not None
        self.store = services.store
        self.metrics = services.metrics
        self.commands: CommandPublisher = services.commands
        self.traces: TraceRequester = services.traces
        assert services.windows is not None
        self.windows = services.windows
        self.key: SigningKey = services.key
        self.registry: Registry = services.registry
        self.drift: DriftService = services.drift
        self.rollouts: RolloutService = services.rollouts
        self.training: TrainingService = services.training
        self.incidents: IncidentService = services.incidents
        self.notifier = Notifier(self.store, settings.incidents, self.commands.publish)
        self.worker = IngestWorker.from_settings(settings, self.store, metrics=self.metrics)
        self.gaps = GapMonitor(self.store, self.commands.send, settings.delivery, self.metrics)
        # A stable holder (the worker's client id) takes its own lease back at once after a restart.
        holder = settings.ingest_client_id or f"{socket.gethostname()}:{os.getpid()}"
        self.leader = Leadership(self.store, holder, ttl_s=settings.jobs_lease_ttl_s)
        lead = self.leader.is_leader
        self.jobs = [
            Periodic("sequence-gaps", settings.delivery.check_interval_s, self.gaps.run, lead),
            Periodic("drift", settings.drift.interval_s, self.drift.run, lead),
            Periodic("trace-requests", settings.trace_request_interval_s, self.traces.run, lead),
            Periodic("raw-windows", settings.raw_window_interval_s, self.windows.run, lead),
            Periodic("retrain-triggers", settings.training.check_interval_s, self.training.check, lead),
            Periodic("rollouts", settings.rollout_tick_s, self.rollouts.tick, lead),
            Periodic("retention", settings.retention.interval_s, self.prune, lead),
            Periodic("incidents", settings.incidents.interval_s, self.incidents.run, lead),
            Periodic("incident-notifications", settings.incidents.notify_interval_s, self.notifier.run, lead),
        ] if jobs else []
        self.jobs = [job for job in self.jobs if job.name not in driven]
        health = services.health  # what /health judges beyond the store
        health.add_connection("ingest", self.worker.session)
        health.add_connection("commands", self.commands)
        self.metrics.watch_mqtt("ingest", self.worker.session.connected.is_set)
        self.metrics.watch_mqtt("commands", self.commands.connected.is_set)
        for job in self.jobs:
            health.add_job(job)

    def prune(self, now: float) -> Pruned:
        """Remove what the retention settings no longer keep (`hub.store.retention`)."""
        r = self.settings.retention
        pruned = self.store.prune(r.cutoffs(now), dead_letters_max_rows=r.dead_letters_max_rows,
                                  dead_letters_max_bytes=r.dead_letters_max_bytes, batch_rows=r.batch_rows)
        if pruned.total:
            log.info("retention: pruned %s", pruned)
        return pruned

    def artifact_url(self, version: str) -> str:
        return self.services.artifact_url(version)

    def app(self) -> FastAPI:
        """The hub's HTTP API over these services (the caller serves it)."""
        from hub.api.app import create_app

        return create_app(self.services)

    def start(self) -> None:
        self.worker.start()
        self.commands.start()
        if self.runs_jobs:
            self.rollouts.resync()  # retained assignments match the newest rollout after a hub restart
            self.training.start()
            self.leader.start()
        for job in self.jobs:
            job.start()
        log.info("hub started: store %s, broker %s:%d", self.settings.store, self.settings.mqtt_host,
                 self.settings.mqtt_port)

    def stop(self) -> None:
        for job in self.jobs:
            job.stop()
        if self.runs_jobs:
            self.leader.stop()
        self.training.stop()
        self.worker.stop()
        self.commands.stop()
        self.notifier.close()
        self.store.close()
