"""The hub store on SQLite: `SqliteHubStore`, one query mixin per role over a shared connection.

- `connection`: per-thread connections, ``BEGIN IMMEDIATE`` transactions, reads.
- `ingest`, `devices`, `labels`, `drift`, `registry`, `rollouts`, `training`: each role's queries.
- `common`: row decoders and bounds more than one role uses.
- `batch`: what a batch of messages becomes in the tables (pure).
- `schema`: the schema as sqlite-utils migrations.
- `store`: `SqliteHubStore`, composing them.
"""

from hub.store.sqlite.store import SqliteHubStore

__all__ = ["SqliteHubStore"]
