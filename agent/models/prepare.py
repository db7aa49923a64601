"""The background preparer: fetch, verify, install and load a candidate while the incumbent keeps serving.

A worker thread turns `Job`s into `Ready` (a loaded model) or `Failed` (a reason, and whether a retry is
worth it); `ModelManager` takes the results in the loop thread. Staging directories are always removed.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
from dataclasses import dataclass

from agent.models.artifact import check_artifact
from agent.models.fetch import ArtifactFetcher
from agent.models.onnx import OnnxModel
from agent.models.store import ModelStore
from shared.errors import FleetloopError, ModelIntegrityError
from shared.messages import Assign

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """Prepare a model: for an assignment (fetch, verify, install, load) or an installed version (load)."""

    version: str
    assign: Assign | None = None


@dataclass(frozen=True)
class Ready:
    job: Job
    model: OnnxModel


@dataclass(frozen=True)
class Failed:
    job: Job
    reason: str
    retry: bool  # worth trying again later (the fetch failed); otherwise the version is refused for good


class Preparer:
    """A worker thread that turns jobs into loaded models (or reasons) without stalling the window loop."""

    def __init__(self, store: ModelStore, fetcher: ArtifactFetcher) -> None:
        self.store = store
        self.fetcher = fetcher
        self.results: queue.SimpleQueue[Ready | Failed] = queue.SimpleQueue()
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, job: Job) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="model-preparer", daemon=True)
            self._thread.start()
        self._jobs.put(job)

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the worker to stop; a download in progress is abandoned (its staging dir is cleaned at start)."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            self.results.put(self.prepare(job))

    def prepare(self, job: Job) -> Ready | Failed:
        stage = "load"
        try:
            if job.assign is not None:
                staging = self.store.staging_dir()
                try:
                    stage = "fetch"
                    version_dir = self.fetcher.fetch(job.assign.url, staging)
                    stage = "verify"
                    check_artifact(version_dir, job.assign, self.store.verifier)
                    self.store.install(version_dir)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
                stage = "load"
            return Ready(job, self.store.load(job.version))
        except FleetloopError as exc:
            transient = stage == "fetch" and not isinstance(exc, ModelIntegrityError)
            return Failed(job, f"{stage}: {exc}", retry=transient)
        except Exception as exc:  # disk full, onnxruntime surprises: report, never kill the worker
            log.exception("preparing model %s failed", job.version)
            return Failed(job, f"{stage}: {type(exc).__name__}: {exc}", retry=stage == "fetch")
