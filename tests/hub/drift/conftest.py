"""The drift tests' fixtures: a models directory with the real initial manifest as ``v1``, and a SQLite store."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.store.sqlite import SqliteHubStore
from shared.manifest import MANIFEST_FILE, ModelManifest, load_manifest


@pytest.fixture
def models_dir(tmp_path: Path, initial_model_dir: Path) -> Path:
    """A models directory of this test's own, holding the real initial version's manifest as ``v1``."""
    root = tmp_path / "models"
    (root / "v1").mkdir(parents=True)
    shutil.copy(initial_model_dir / MANIFEST_FILE, root / "v1" / MANIFEST_FILE)
    return root


@pytest.fixture
def manifest(models_dir: Path) -> ModelManifest:
    return load_manifest((models_dir / "v1" / MANIFEST_FILE).read_bytes())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteHubStore]:
    s = SqliteHubStore(tmp_path / "hub.db")
    yield s
    s.close()
