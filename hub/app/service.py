"""The hub as one process: ingest worker, drift scheduler and (optionally) the API, sharing one store."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from hub.app.metrics import HubMetrics
from hub.app.settings import HubSettings
from hub.delivery.service import GapMonitor
from hub.drift.service import DriftService
from hub.mqtt.ingest import IngestWorker
from hub.mqtt.publisher import CommandPublisher, TraceRequester
from hub.registry.references import ReferenceLibrary
from hub.registry.service import Registry
from hub.registry.signing import SigningKey, default_key_path
from hub.rollout.service import RolloutService
from hub.store import HubStore, open_store
from hub.training.service import TrainingService

log = logging.getLogger(__name__)


class Periodic:
    """Runs `task(now)` every `interval_s` seconds in a daemon thread; an exception is logged, never fatal."""

    def __init__(self, name: str, interval_s: float, task: Callable[[float], object]) -> None:
        self.name = name
        self.interval_s = interval_s
        self.task = task
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.runs = 0
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.task(time.time())
                self.runs += 1
            except Exception:  # a failed run is retried next interval
                self.failures += 1
                log.exception("%s failed", self.name)


class HubService:
    """Store + ingest worker + periodic jobs. `start()`, `stop()`; the API is served on top by the CLI."""

    def __init__(self, settings: HubSettings, store: HubStore | None = None) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = store if store is not None else open_store(settings.store)
        self.metrics = HubMetrics()
        self.worker = IngestWorker.from_settings(settings, self.store, metrics=self.metrics)
        self.commands = CommandPublisher(settings)
        self.traces = TraceRequester(self.store, settings.labels, self.commands.send)
        self.key = SigningKey.load(settings.signing_key_file or default_key_path(settings.data_dir),
                                   dev_mode=settings.dev_mode)
        self.registry = Registry(self.store, settings.data_dir / "models", self.key)
        self.drift = DriftService(self.store, ReferenceLibrary(settings.data_dir / "models"), settings.drift)
        self.rollouts = RolloutService(
            self.store, self.registry, self.commands, artifact_url=self.artifact_url,
            limits=settings.rollout_limits.to_limits(),
            # a drift verdict on the incumbent counts while its window could still overlap the rollout's start
            drift_max_age_s=settings.drift.window_s + settings.drift.interval_s,
        )
        self.training = TrainingService(self.store, self.registry, settings.training, labels=settings.labels,
                                        staging_dir=settings.data_dir / "staging")
        self.gaps = GapMonitor(self.store, self.commands.send, settings.delivery, self.metrics)
        self.jobs = [
            Periodic("sequence-gaps", settings.delivery.check_interval_s, self.gaps.run),
            Periodic("drift", settings.drift.interval_s, self.drift.run),
            Periodic("trace-requests", settings.trace_request_interval_s, self.traces.run),
            Periodic("retrain-triggers", settings.training.check_interval_s, self.training.check),
            Periodic("rollouts", settings.rollout_tick_s, self.rollouts.tick),
        ]

    def artifact_url(self, version: str) -> str:
        return f"{self.settings.artifact_base_url.rstrip('/')}/models/{version}/artifact"

    def start(self) -> None:
        self.worker.start()
        self.commands.start()
        self.rollouts.resync()  # retained assignments match the newest rollout after a hub restart
        self.training.start()
        for job in self.jobs:
            job.start()
        log.info("hub started: store %s, broker %s:%d", self.settings.store, self.settings.mqtt_host,
                 self.settings.mqtt_port)

    def stop(self) -> None:
        for job in self.jobs:
            job.stop()
        self.training.stop()
        self.worker.stop()
        self.commands.stop()
        self.store.close()
