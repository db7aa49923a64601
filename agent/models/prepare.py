"""The background preparer: fetch, verify, install, try and load a candidate while the incumbent keeps serving.

A worker thread turns `Job`s into `Ready` (a loaded model) or `Failed` (a reason, and whether a retry is
worth it); `ModelManager` takes the results in the loop thread. Staging directories are always removed.
What fails before the content verified (fetch, verify: a broken mirror, a tampered download) is retried and
never refuses the assigned version; what fails after (trial, load) is the model itself and refuses it for good.
A new version is tried in a memory-limited child (`agent.models.trial`) before it is loaded here.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from agent.models.artifact import check_artifact
from agent.models.fetch import ArtifactFetcher
from agent.models.onnx import OnnxModel
from agent.models.store import ModelStore
from agent.models.trial import TrialLimits, run_trial
from infra.versions import read_version
from shared.errors import FleetloopError
from shared.manifest import MODEL_FILE, sha256_bytes
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
    retry: bool  # worth trying again later (fetch or verify failed); otherwise the version is refused for good
    received: str | None = None  # sha256 of the model bytes actually received, when any arrived


class Preparer:
    """A worker thread that turns jobs into loaded models (or reasons) without stalling the window loop."""

    def __init__(self, store: ModelStore, fetcher: ArtifactFetcher, trial: TrialLimits | None = None) -> None:
        self.store = store
        self.fetcher = fetcher
        self.trial = trial
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
        stage, received = "load", None
        try:
            if job.assign is not None:
                staging = self.store.staging_dir()
                try:
                    stage = "fetch"
                    version_dir = self.fetcher.fetch(job.assign.url, staging)
                    stage = "verify"
                    received = _received(version_dir)
                    check_artifact(version_dir, job.assign, self.store.verifier)
                    read_version(version_dir, self.store.verifier)  # manifest.sig too, before anything is refused
                    stage = "install"
                    self.store.install(version_dir)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
                if self.trial is not None and job.version != self.store.active_version:
                    stage = "trial"
                    run_trial(self.store.root / job.version, self.trial)
                stage = "load"
            return Ready(job, self.store.load(job.version))
        except FleetloopError as exc:
            return Failed(job, f"{stage}: {exc}", retry=stage in ("fetch", "verify"), received=received)
        except Exception as exc:  # disk full, onnxruntime surprises: report, never kill the worker
            log.exception("preparing model %s failed", job.version)
            return Failed(job, f"{stage}: {type(exc).__name__}: {exc}", retry=stage in ("fetch", "verify", "install"),
                          received=received)


def _received(version_dir: Path) -> str | None:
    """sha256 of the model file that arrived (what a refusal is keyed by), if one did."""
    try:
        return sha256_bytes((version_dir / MODEL_FILE).read_bytes())
    except OSError:
        return None
