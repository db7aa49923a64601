"""`PostgresHubStore`: the hub store on one PostgreSQL database (psycopg 3, a connection pool, migrations at start).

It composes one query mixin per role (`hub.store.ports`) over a shared `PostgresConnection`; opening it applies
any pending migration under an advisory lock, so every hub process that opens the database sees the current
schema and two starting at once migrate once.
"""

from __future__ import annotations

import psycopg

from hub.store.postgres.connection import redacted
from hub.store.postgres.devices import DeviceQueries
from hub.store.postgres.drift import DriftQueries
from hub.store.postgres.incidents import IncidentQueries
from hub.store.postgres.ingest import IngestQueries
from hub.store.postgres.labels import LabelQueries
from hub.store.postgres.leases import LeaseQueries
from hub.store.postgres.references import ReferenceQueries
from hub.store.postgres.registry import RegistryQueries
from hub.store.postgres.retention import RetentionQueries
from hub.store.postgres.rollouts import RolloutQueries
from hub.store.postgres.schema import migrate
from hub.store.postgres.sequences import SequenceQueries
from hub.store.postgres.training import TrainingQueries
from hub.store.sqlite.windows import WindowQueries
from shared.errors import StoreError


class PostgresHubStore(
    IngestQueries, DeviceQueries, LabelQueries, DriftQueries, RegistryQueries, RolloutQueries, TrainingQueries,
    RetentionQueries,
    SequenceQueries, ReferenceQueries, IncidentQueries, LeaseQueries, WindowQueries,
):
    """The hub store in one PostgreSQL database. Thread-safe: each call borrows a pooled connection."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, timeout_s: float = 30.0) -> None:
        super().__init__(url, min_size=min_size, max_size=max_size, timeout_s=timeout_s)
        try:
            with self._pool.connection() as conn:
                row = conn.execute("SHOW server_encoding").fetchone()
                encoding = row[0].decode() if row and isinstance(row[0], bytes) else str(row[0] if row else "?")
                if encoding != "UTF8":
                    self.close()
                    raise StoreError(
                        f"hub database {redacted(url)} is encoded {encoding!r}, not UTF8 "
                        "(text would come back as bytes): create it with `createdb -E UTF8 -T template0 …` (initdb "
                        "under a UTF-8 locale does it, as the official postgres image does)")
                migrate(conn)
        except psycopg.Error as exc:
            self.close()
            raise StoreError(f"cannot migrate hub database {redacted(url)}: {exc}") from exc

    def __repr__(self) -> str:
        return f"PostgresHubStore({redacted(self.url)!r})"
