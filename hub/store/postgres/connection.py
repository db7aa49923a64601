"""The PostgreSQL store's connection pool and transactions, shared by every role's queries.

A `psycopg_pool.ConnectionPool` lends a connection per call, so any thread may use the store. Reads run in
autocommit (one statement, one snapshot); every write is one explicit transaction, rolled back on any error,
so a killed hub leaves a batch either fully stored or not at all. Where SQLite serialises writers with
``BEGIN IMMEDIATE``, PostgreSQL runs them side by side: a write whose correctness needs that order (a
check-then-insert, a commit-ordered cursor) takes a transaction-scoped advisory lock (`_lock`).
Database errors become `StoreError` (the API's ``/health`` answers 503, ingest stops acknowledging).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import psycopg
from psycopg.cursor import BaseCursor
from psycopg.rows import RowMaker
from psycopg_pool import ConnectionPool, PoolTimeout

from hub.store.factory import redacted
from shared.errors import StoreError

log = logging.getLogger(__name__)


class Row(tuple[Any, ...]):
    """A result row read by position or by column name, as `sqlite3.Row` is."""

    _names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)


def row_factory(cursor: BaseCursor[Any, Any]) -> RowMaker[Row]:
    """psycopg row factory making `Row`s (one subclass per result shape, so a row stays a plain tuple)."""
    names = {d.name: i for i, d in enumerate(cursor.description or ())}
    shaped: type[Row] = type("Row", (Row,), {"_names": names})
    return shaped


class PostgresConnection:
    """One PostgreSQL database behind a connection pool; the base of every query mixin."""

    P = "%s"  # the placeholder, for statements both backends share

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, timeout_s: float = 30.0) -> None:
        self.url = url
        self._name = redacted(url)
        self._pool = ConnectionPool(
            url, min_size=min_size, max_size=max_size, timeout=timeout_s, open=False,
            kwargs={"autocommit": True, "row_factory": row_factory}, name="fleetloop-hub",
        )
        try:
            self._pool.open(wait=True, timeout=timeout_s)
        except PoolTimeout as exc:
            self._pool.close()
            raise StoreError(f"cannot connect to hub database {self._name} within {timeout_s:g} s: {exc}") from None

    def close(self) -> None:
        """Close the pool; the store cannot be used afterwards."""
        self._pool.close()

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[Row]]:
        """One transaction on a pooled connection: committed on success, rolled back on any error."""
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield cast("psycopg.Connection[Row]", conn)
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreError(f"hub database {self._name}: {exc}") from exc

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            with self._pool.connection() as conn:
                return cast("list[Row]", conn.execute(sql, params).fetchall())
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreError(f"hub database {self._name}: {exc}") from exc


def violated(exc: StoreError, constraint: str) -> bool:
    """Whether `exc` is a unique violation of `constraint` (an index that settles a race the database's way)."""
    cause = exc.__cause__
    return isinstance(cause, psycopg.errors.UniqueViolation) and cause.diag.constraint_name == constraint


def lock(conn: psycopg.Connection[Any], name: str) -> None:
    """Hold a transaction-scoped advisory lock named `name` until the caller's transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))


__all__ = ["PostgresConnection", "Row", "lock", "redacted", "violated"]
