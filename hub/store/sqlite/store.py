"""`SqliteHubStore`: the hub store on one SQLite file (sqlite-utils migrations, WAL, explicit transactions).

It composes one query mixin per role (`hub.store.ports`) over a shared `SqliteConnection`; opening it
applies any pending migration, so every process that opens the file sees the current schema.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sqlite_utils import Database

from hub.store.sqlite.devices import DeviceQueries
from hub.store.sqlite.drift import DriftQueries
from hub.store.sqlite.incidents import IncidentQueries
from hub.store.sqlite.ingest import IngestQueries
from hub.store.sqlite.labels import LabelQueries
from hub.store.sqlite.leases import LeaseQueries
from hub.store.sqlite.references import ReferenceQueries
from hub.store.sqlite.registry import RegistryQueries
from hub.store.sqlite.retention import RetentionQueries
from hub.store.sqlite.rollouts import RolloutQueries
from hub.store.sqlite.schema import migrations
from hub.store.sqlite.sequences import SequenceQueries
from hub.store.sqlite.training import TrainingQueries
from hub.store.sqlite.windows import WindowQueries
from shared.errors import StoreError


class SqliteHubStore(
    IngestQueries, DeviceQueries, LabelQueries, DriftQueries, RegistryQueries, RolloutQueries, TrainingQueries,
    RetentionQueries,
    SequenceQueries, ReferenceQueries, IncidentQueries, LeaseQueries, WindowQueries,
):
    """The hub store in one SQLite file. Thread-safe: one connection per thread, opened on first use."""

    def __init__(self, path: Path | str, *, busy_timeout_s: float = 30.0) -> None:
        super().__init__(path, busy_timeout_s=busy_timeout_s)
        db = Database(self._conn())
        for attempt in range(3):
            try:
                migrations.apply(db)
                break
            except sqlite3.DatabaseError as exc:  # e.g. another process migrating the same file right now
                if attempt == 2:
                    raise StoreError(f"cannot migrate hub database {self.path}: {exc}") from exc
                time.sleep(0.1)

    def __repr__(self) -> str:
        return f"SqliteHubStore({str(self.path)!r})"
