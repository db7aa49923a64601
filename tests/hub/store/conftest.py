"""The store fixtures: `store` is each backend in turn (a fresh SQLite file; a PostgreSQL database emptied for
the test on the run's own server), so one contract suite proves both; `sqlite_store` for SQLite-only tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.store.ports import HubStore
from hub.store.sqlite import SqliteHubStore
from tests.fixtures.postgres import PostgresServer, create_database, truncate_all


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteHubStore]:
    s = SqliteHubStore(tmp_path / "hub.db")
    yield s
    s.close()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """One hub database for the session, migrated by the first store opened on it."""
    return create_database(postgres_server, "hub_contract")


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubStore]:
    if request.param == "sqlite":
        s: HubStore = SqliteHubStore(tmp_path / "hub.db")
    else:
        from hub.store.postgres import PostgresHubStore

        url = request.getfixturevalue("postgres_url")
        truncate_all(url)
        s = PostgresHubStore(url, max_size=4)
    yield s
    s.close()
