"""`open_store(url)`: the one place a store URL becomes a `HubStore`."""

from __future__ import annotations

import re
from pathlib import Path

from hub.store.ports import HubStore
from shared.errors import ConfigError


def redacted(url: str) -> str:
    """`url` without its password, for messages and logs."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def open_store(url: str) -> HubStore:
    """Open the store a URL names: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, or
    ``postgresql://user:password@host:port/database`` (any libpq URL; ``postgres://`` too).

    PostgreSQL needs the ``postgres`` extra (psycopg 3 and its pool); without it the URL is refused clearly.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"store URL {url!r} has no scheme: use sqlite:///path/to/hub.db")
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(f"store URL {url!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db")
        from hub.store.sqlite import SqliteHubStore

        return SqliteHubStore(Path(rest[1:]))
    if scheme in ("postgresql", "postgres"):
        try:
            from hub.store.postgres import PostgresHubStore
        except ImportError as exc:
            raise ConfigError(
                f"the PostgreSQL hub store needs psycopg 3 ({exc.name} is missing): pip install 'fleetloop[postgres]'"
            ) from None
        return PostgresHubStore(url)
    if scheme.startswith("postgresql+"):
        raise ConfigError(f"store URL {redacted(url)!r}: write postgresql://user:password@host:port/database "
                          "(no SQLAlchemy driver suffix)")
    raise ConfigError(
        f"store URL {redacted(url)!r}: unknown scheme {scheme!r}; use sqlite:///path/to/hub.db or postgresql://…"
    )
