"""The agent's model store: verified versions on disk, the active one and the previous one.

Layout: ``{root}/{version}/model.onnx, manifest.json[, manifest.sig]``. Which version is active (and
which was before it) is kept in the agent database, so switching is one atomic commit and a kill -9
at any point leaves a pointer to a version that was verified before it was pointed at. Work in progress
(downloads, half-copied installs) lives in dot-named directories that `clean_staging` removes at start.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from agent.db import AgentDB
from agent.models.onnx import OnnxModel
from infra.files import fsync_path
from infra.versions import ManifestVerifier, read_version
from shared.errors import ModelError, ModelIntegrityError
from shared.manifest import MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE, ModelManifest

log = logging.getLogger(__name__)

ACTIVE = "model.active"
PREVIOUS = "model.previous"
STAGING = ".staging"  # downloads in progress; everything dot-named under the root is work in progress


class ModelStore:
    def __init__(self, root: Path, db: AgentDB, verifier: ManifestVerifier | None = None) -> None:
        self.root = root
        self.db = db
        self.verifier = verifier
        self.refusals: list[tuple[str, str]] = []  # (version, reason) of versions refused, for model events
        root.mkdir(parents=True, exist_ok=True)

    def versions(self) -> list[str]:
        return sorted(
            p.name for p in self.root.iterdir() if not p.name.startswith(".") and (p / MANIFEST_FILE).is_file()
        )

    def staging_dir(self) -> Path:
        """A fresh empty directory for a download; nothing points at it, `clean_staging` removes leftovers."""
        parent = self.root / STAGING
        parent.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="fetch.", dir=parent))

    def clean_staging(self) -> int:
        """Remove what a kill -9 left behind (partial downloads and installs); return how many entries."""
        removed = 0
        for path in self.root.iterdir():
            if path.name.startswith("."):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed += 1
        if removed:
            log.info("removed %d unfinished download/install directories from %s", removed, self.root)
        return removed

    @property
    def active_version(self) -> str | None:
        return self.db.get_state(ACTIVE)

    @property
    def previous_version(self) -> str | None:
        return self.db.get_state(PREVIOUS)

    def install(self, source: Path) -> ModelManifest:
        """Verify a version directory and copy it into the store (atomically; idempotent)."""
        manifest, _ = read_version(source, self.verifier)
        target = self.root / manifest.version
        if target.exists():
            existing, _ = read_version(target, self.verifier)
            if existing.onnx_sha256 != manifest.onnx_sha256:
                raise ModelIntegrityError(f"version {manifest.version} is already installed with other content")
            return existing
        staging = Path(tempfile.mkdtemp(prefix=f".{manifest.version}.", dir=self.root))
        try:
            for name in (MODEL_FILE, MANIFEST_FILE, SIGNATURE_FILE):
                if (source / name).is_file():
                    shutil.copyfile(source / name, staging / name)
                    fsync_path(staging / name)
            read_version(staging, self.verifier)  # what landed on disk is what we checked
            staging.rename(target)
            fsync_path(self.root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("installed model %s", manifest.version)
        return manifest

    def load(self, version: str) -> OnnxModel:
        """Verify and load one installed version (does not change which version is active)."""
        manifest, onnx_bytes = read_version(self.root / version, self.verifier)
        if manifest.version != version:
            raise ModelIntegrityError(f"directory {version} holds a manifest for {manifest.version}")
        return OnnxModel(manifest, onnx_bytes)

    def activate(self, version: str) -> OnnxModel:
        """Load `version` and make it the active one; the old active becomes previous."""
        model = self.load(version)
        current = self.active_version
        if current != version:
            self.db.set_state({ACTIVE: version, PREVIOUS: current})
        return model

    def set_active(self, version: str, *, previous: str | None, state: dict[str, str | None] | None = None) -> None:
        """Point at `version` (already installed, verified and loaded by the caller) in one transaction.

        `state` adds other keys to the same commit (e.g. a pending health check).
        """
        if not (self.root / version / MANIFEST_FILE).is_file():
            raise ModelError(f"version {version} is not installed")
        self.db.set_state({ACTIVE: version, PREVIOUS: previous, **(state or {})})

    def load_active(self) -> OnnxModel | None:
        """The active model; if it no longer verifies or loads, fall back to the previous one."""
        active = self.active_version
        if active is None:
            return None
        try:
            return self.load(active)
        except ModelError as exc:
            previous = self.previous_version
            log.error("active model %s refused (%s); falling back to %s", active, exc, previous)
            self.refusals.append((active, str(exc)))
            if previous is None:
                raise
            model = self.load(previous)
            self.db.set_state({ACTIVE: previous, PREVIOUS: None})
            return model

    def rollback(self) -> OnnxModel:
        """Make the previous version active again."""
        previous = self.previous_version
        if previous is None:
            raise ModelError("no previous model version to roll back to")
        model = self.load(previous)
        self.db.set_state({ACTIVE: previous, PREVIOUS: self.active_version})
        return model
