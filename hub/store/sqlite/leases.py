"""Named leases on SQLite: one upsert that takes a lease only if it is free, expired or already ours."""

from __future__ import annotations

from hub.store.sqlite.connection import SqliteConnection

# The statement both backends run (PostgreSQL with %s placeholders): the row is written only when nobody else
# holds an unexpired lease, and the holder read back in the same transaction says who won.
ACQUIRE = (
    "INSERT INTO leases (name, holder, expires) VALUES ({p}, {p}, {p}) "
    "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires "
    "WHERE leases.holder = excluded.holder OR leases.expires <= {p}"
)


class LeaseQueries(SqliteConnection):
    """`LeaseStore` on SQLite (a mixin of `SqliteHubStore`)."""

    def acquire_lease(self, name: str, holder: str, *, ttl_s: float, now: float) -> bool:
        with self._write() as conn:
            conn.execute(ACQUIRE.format(p="?"), (name, holder, now + ttl_s, now))
            row = conn.execute("SELECT holder FROM leases WHERE name = ?", (name,)).fetchone()
        return row is not None and row[0] == holder

    def release_lease(self, name: str, holder: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))

    def lease_holder(self, name: str, *, now: float) -> str | None:
        rows = self._read("SELECT holder FROM leases WHERE name = ? AND expires > ?", [name, now])
        return str(rows[0][0]) if rows else None
