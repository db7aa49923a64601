"""`open_store(url)`: the one place a store URL becomes a `HubStore`."""

from __future__ import annotations

from pathlib import Path

from hub.store.ports import HubStore
from shared.errors import ConfigError


def open_store(url: str) -> HubStore:
    """Open the store a URL names: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.

    ``postgresql://…`` is reserved for the multi-machine hub and refused until that store exists.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"store URL {url!r} has no scheme: use sqlite:///path/to/hub.db")
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(f"store URL {url!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db")
        from hub.store.sqlite import SqliteHubStore

        return SqliteHubStore(Path(rest[1:]))
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        raise ConfigError(
            f"store URL {url!r}: the PostgreSQL hub store is not built yet; use sqlite:///path/to/hub.db "
            "(the HubStore protocols in hub/store/ports.py are what a PostgreSQL store must implement)"
        )
    raise ConfigError(f"store URL {url!r}: unknown scheme {scheme!r}; use sqlite:///path/to/hub.db")
