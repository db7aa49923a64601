"""Model version → manifest, for the hub jobs that need a version's reference bins (drift).

`ReferenceLibrary` reads ``{models_dir}/{version}/manifest.json`` and caches what it finds. Anything
that answers `manifest(version)` will do (`ManifestSource`): the model registry will take this
library's place without the drift job noticing.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Protocol

from shared.manifest import MANIFEST_FILE, ModelManifest, load_manifest

log = logging.getLogger(__name__)

# ModelManifest.version's pattern: one path level, never "." or "..", so a version cannot leave models_dir.
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class ManifestSource(Protocol):
    """Where the hub looks up a model version's manifest."""

    def manifest(self, version: str) -> ModelManifest | None:
        """The manifest of `version`, or None when the version is unknown or unreadable."""
        ...


class ReferenceLibrary:
    """Manifests of the model versions under `models_dir` (one directory per version), cached once read.

    Only the manifest is read: drift needs its reference bins, not the ONNX file, whose checksum the
    agents verify before serving it. Unknown or unreadable versions are logged and give None; they are
    looked up again next time, so a version published later is found.
    """

    def __init__(self, models_dir: Path | str) -> None:
        self.models_dir = Path(models_dir)
        self._cache: dict[str, ModelManifest] = {}
        self._lock = threading.Lock()

    def manifest(self, version: str) -> ModelManifest | None:
        with self._lock:
            cached = self._cache.get(version)
        if cached is not None:
            return cached
        found = self._read(version)
        if found is not None:
            with self._lock:
                self._cache[version] = found
        return found

    def _read(self, version: str) -> ModelManifest | None:
        if not _VERSION.match(version) or len(version) > 128:
            log.warning("model version %r is not a valid version name; no manifest", version)
            return None
        path = self.models_dir / version / MANIFEST_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            log.warning("unknown model version %r: no %s", version, path)
            return None
        except OSError as exc:
            log.warning("cannot read the manifest of model version %r (%s): %s", version, path, exc.strerror)
            return None
        try:
            manifest = load_manifest(raw)
        except ValueError as exc:
            log.warning("%s is not a valid manifest: %s", path, exc)
            return None
        if manifest.version != version:
            log.warning("%s names version %r, not %r; ignored", path, manifest.version, version)
            return None
        return manifest

    def __repr__(self) -> str:
        return f"ReferenceLibrary({str(self.models_dir)!r})"
