"""Every migration function in the hub schema is registered and applied to a fresh database."""

from __future__ import annotations

import inspect
import sqlite3
from pathlib import Path

from hub.store.sqlite import SqliteHubStore, schema


def test_every_schema_function_is_an_applied_migration(tmp_path: Path) -> None:
    defined = {name for name, fn in inspect.getmembers(schema, inspect.isfunction) if name[:1] == "m"
               and name[1:4].isdigit()}
    SqliteHubStore(tmp_path / "hub.db").close()
    with sqlite3.connect(tmp_path / "hub.db") as conn:
        applied = {row[0] for row in conn.execute("SELECT name FROM _sqlite_migrations")}
    assert defined - applied == set()  # a migration without @migrations() is silently never applied
