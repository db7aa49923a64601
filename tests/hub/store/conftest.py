"""The store fixture: a fresh SQLite hub store on a real file, closed after the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.store.sqlite import SqliteHubStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteHubStore]:
    s = SqliteHubStore(tmp_path / "hub.db")
    yield s
    s.close()
