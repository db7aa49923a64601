"""Fixtures of the ``fleetloop dev up`` tests: a state directory per test, and `dev up`'s first model built once."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetloop.devup import initial_model
from tests.e2e.terminal import processes_under


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """A `dev up` state directory; whatever still runs on it at the end is killed (a failed test leaves nothing)."""
    root = tmp_path / "dev"
    yield root
    for line in processes_under(root):
        os.kill(int(line.split(":")[0]), signal.SIGKILL)


@pytest.fixture(scope="session")
def dev_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`dev up`'s first model (seed 0), built once for the session by `dev up`'s own function."""
    return initial_model(tmp_path_factory.mktemp("dev-model"), seed=0)


@pytest.fixture
def dev_root(root: Path, dev_model: Path) -> Path:
    """A state directory holding the session's first model, which `dev up` reuses as it reuses one it built in an
    earlier run there (instead of building it again, ~10 s)."""
    shutil.copytree(dev_model, root / "models" / "v1")
    return root
