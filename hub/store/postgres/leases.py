"""Named leases on PostgreSQL: the SQLite store's upsert (`hub.store.sqlite.leases.ACQUIRE`); the row lock the
upsert takes makes two processes racing for a free lease see one winner."""

from __future__ import annotations

from hub.store.postgres.connection import PostgresConnection
from hub.store.sqlite.leases import ACQUIRE


class LeaseQueries(PostgresConnection):
    """`LeaseStore` on PostgreSQL (a mixin of `PostgresHubStore`)."""

    def acquire_lease(self, name: str, holder: str, *, ttl_s: float, now: float) -> bool:
        with self._write() as conn:
            conn.execute(ACQUIRE.format(p="%s"), (name, holder, now + ttl_s, now))
            row = conn.execute("SELECT holder FROM leases WHERE name = %s", (name,)).fetchone()
        return row is not None and row[0] == holder

    def release_lease(self, name: str, holder: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM leases WHERE name = %s AND holder = %s", (name, holder))

    def lease_holder(self, name: str, *, now: float) -> str | None:
        rows = self._read("SELECT holder FROM leases WHERE name = %s AND expires > %s", [name, now])
        return str(rows[0][0]) if rows else None
