"""The hub store on PostgreSQL: `PostgresHubStore`, one query mixin per role over a connection pool.

- `connection`: the psycopg pool, one transaction per write, autocommit reads, advisory locks.
- `ingest`, `devices`, `labels`, `drift`, `registry`, `rollouts`, `training`, `retention`, `sequences`,
  `references`, `incidents`: each role's queries (the SQLite store's, in PostgreSQL's dialect).
- `common`: row decoders more than one role uses.
- `schema`: the migrations (the SQLite store's names and meaning) and `migrate`.
- `store`: `PostgresHubStore`, composing them.

What a batch of messages becomes in the tables (`hub.store.sqlite.batch`) is pure and shared by both stores.
"""

from hub.store.postgres.store import PostgresHubStore

__all__ = ["PostgresHubStore"]
