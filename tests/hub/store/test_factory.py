"""`open_store(url)`: SQLite and PostgreSQL URLs open their store; anything else is refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.store import open_store
from hub.store.postgres import PostgresHubStore
from hub.store.sqlite import SqliteHubStore
from shared.errors import ConfigError


def test_open_store_takes_sqlite_urls_and_refuses_unknown_ones(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'a' / 'hub.db'}")
    assert isinstance(store, SqliteHubStore) and store.path == tmp_path / "a" / "hub.db"
    store.close()
    for bad in ("hub.db", "mysql://x/y", "sqlite://", "postgresql+psycopg://hub@db/fleetloop"):
        with pytest.raises(ConfigError, match="store URL"):
            open_store(bad)
    with pytest.raises(ConfigError, match=r"mysql://hub:\*\*\*@db/x"):  # a password never reaches a message
        open_store("mysql://hub:secret@db/x")


def test_open_store_takes_postgresql_urls(postgres_url: str) -> None:
    store = open_store(postgres_url)
    try:
        assert isinstance(store, PostgresHubStore) and store.devices() is not None
    finally:
        store.close()
