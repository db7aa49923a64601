"""Retention on PostgreSQL: prune old rows in short transactions, keeping what labels and training need.

See `hub.store.retention` for what is kept and why; the rules are the SQLite store's, keyed by primary keys
instead of rowids.
"""

from __future__ import annotations

from hub.store.postgres.connection import PostgresConnection
from hub.store.retention import Cutoffs, Pruned
from hub.store.rollup import rollup_days_before
from hub.store.sqlite.retention import prune_ended_incidents

# A sample nothing refers to: no annotation names it (by trace or by its device's time range), no label set
# holds it, and it is not in the frozen evaluation slice.
_UNREFERENCED_SAMPLE = (
    "kind = 'sample' AND ts < %s "
    "AND NOT EXISTS (SELECT 1 FROM annotations a WHERE a.trace_id = p.trace_id) "
    "AND NOT EXISTS (SELECT 1 FROM annotations a WHERE a.trace_id IS NULL AND a.device_id = p.device_id "
    "AND a.start_ts <= p.ts AND p.ts <= a.end_ts) "
    "AND NOT EXISTS (SELECT 1 FROM label_set_items i WHERE i.trace_id = p.trace_id) "
    "AND NOT EXISTS (SELECT 1 FROM eval_slice e WHERE e.trace_id = p.trace_id)"
)


# An incident that is over (see `hub.store.retention`), with no notification of it still to deliver.
_ENDED_INCIDENT = (
    "i.state IN ('resolved', 'closed', 'dropped') AND coalesce(i.closed_ts, i.resolved_ts, i.updated_ts) < %s "
    "AND NOT EXISTS (SELECT 1 FROM incident_notifications n WHERE n.incident_id = i.id AND n.status = 'pending')"
)


class RetentionQueries(PostgresConnection):
    """`RetentionStore` on PostgreSQL (a mixin of `PostgresHubStore`)."""

    def prune(self, cutoffs: Cutoffs, *, dead_letters_max_rows: int, dead_letters_max_bytes: int,
              batch_rows: int = 5000) -> Pruned:
        dead = self._delete_batches("dead_letters", "id", "ts < %s", [cutoffs.dead_letters], batch_rows)
        dead += self._delete_batches(
            "dead_letters", "id",
            "id <= coalesce((SELECT id FROM dead_letters ORDER BY id DESC LIMIT 1 OFFSET %s), -1)",
            [dead_letters_max_rows], batch_rows)
        dead += self._delete_batches(
            "dead_letters", "id",
            "id <= coalesce((SELECT id FROM (SELECT id, sum(length(payload) + length(detail)) OVER (ORDER BY id DESC) "
            "AS kept FROM dead_letters) k WHERE kept > %s ORDER BY id DESC LIMIT 1), -1)",
            [dead_letters_max_bytes], batch_rows)
        # the roll-ups of the days wholly before the stats cutoff (cumulative within a day; not counted: not stats rows)
        self._delete_batches("stats_hourly", "id", "hour < %s", [rollup_days_before(cutoffs.stats)], batch_rows)
        return Pruned(
            dead_letters=dead,
            events=self._delete_batches("events", "id", "ts < %s", [cutoffs.events], batch_rows),
            drift_reports=self._delete_batches(
                "drift_reports", "id", "ts < %s AND id NOT IN (SELECT max(id) FROM drift_reports GROUP BY scope)",
                [cutoffs.drift_reports], batch_rows),
            stats=self._delete_batches("stats", "msg_id", "period_end < %s", [cutoffs.stats], batch_rows),
            samples=self._delete_batches("predictions p", "trace_id", _UNREFERENCED_SAMPLE, [cutoffs.samples],
                                         batch_rows),
            incidents=prune_ended_incidents(self._delete_batches, _ENDED_INCIDENT, cutoffs.incidents, batch_rows),
        )

    def _delete_batches(self, table: str, key: str, where: str, params: list[object], batch_rows: int) -> int:
        """DELETE the rows of `table` matching `where`, `batch_rows` per transaction; how many went."""
        name = table.split()[0]
        total = 0
        while True:
            with self._write() as conn:
                n = conn.execute(
                    f"DELETE FROM {name} WHERE {key} IN (SELECT {key} FROM {table} WHERE {where} LIMIT %s)",
                    [*params, batch_rows],
                ).rowcount
            total += n
            if n < batch_rows:
                return total
