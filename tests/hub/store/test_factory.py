"""`open_store(url)`: SQLite URLs open a store; PostgreSQL and anything else are refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.store import open_store
from hub.store.sqlite import SqliteHubStore
from shared.errors import ConfigError


def test_open_store_takes_sqlite_urls_and_refuses_postgresql_for_now(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'a' / 'hub.db'}")
    assert isinstance(store, SqliteHubStore) and store.path == tmp_path / "a" / "hub.db"
    store.close()
    with pytest.raises(ConfigError, match="PostgreSQL hub store is not built yet"):
        open_store("postgresql://hub@db/fleetloop")
    for bad in ("hub.db", "mysql://x/y", "sqlite://"):
        with pytest.raises(ConfigError, match="store URL"):
            open_store(bad)
