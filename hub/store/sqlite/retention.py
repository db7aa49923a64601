"""Retention on SQLite: prune old rows in short transactions, keeping what labels and training need.

See `hub.store.retention` for what is kept and why.
"""

from __future__ import annotations

from collections.abc import Callable

from hub.store.retention import Cutoffs, Pruned
from hub.store.rollup import rollup_days_before
from hub.store.sqlite.connection import SqliteConnection

# A sample nothing refers to: no annotation names it (by trace or by its device's time range), no label set
# holds it, and it is not in the frozen evaluation slice.
_UNREFERENCED_SAMPLE = (
    "kind = 'sample' AND ts < ? "
    "AND NOT EXISTS (SELECT 1 FROM annotations a WHERE a.trace_id = p.trace_id) "
    "AND NOT EXISTS (SELECT 1 FROM annotations a WHERE a.trace_id IS NULL AND a.device_id = p.device_id "
    "AND a.start_ts <= p.ts AND p.ts <= a.end_ts) "
    "AND trace_id NOT IN (SELECT trace_id FROM label_set_items) "
    "AND NOT EXISTS (SELECT 1 FROM eval_slice e WHERE e.trace_id = p.trace_id)"
)


# An incident that is over (see `hub.store.retention`), with no notification of it still to deliver.
_ENDED_INCIDENT = (
    "i.state IN ('resolved', 'closed', 'dropped') AND coalesce(i.closed_ts, i.resolved_ts, i.updated_ts) < ? "
    "AND NOT EXISTS (SELECT 1 FROM incident_notifications n WHERE n.incident_id = i.id AND n.status = 'pending')"
)


class RetentionQueries(SqliteConnection):
    """`RetentionStore` on SQLite (a mixin of `SqliteHubStore`)."""

    def prune(self, cutoffs: Cutoffs, *, dead_letters_max_rows: int, dead_letters_max_bytes: int,
              batch_rows: int = 5000) -> Pruned:
        dead = self._delete_batches("dead_letters", "id", "ts < ?", [cutoffs.dead_letters], batch_rows)
        dead += self._delete_batches(
            "dead_letters", "id", "id <= coalesce((SELECT id FROM dead_letters ORDER BY id DESC LIMIT 1 OFFSET ?), -1)",
            [dead_letters_max_rows], batch_rows)
        dead += self._delete_batches(
            "dead_letters", "id",
            "id <= coalesce((SELECT id FROM (SELECT id, sum(length(payload) + length(detail)) OVER (ORDER BY id DESC) "
            "AS kept FROM dead_letters) WHERE kept > ? ORDER BY id DESC LIMIT 1), -1)",
            [dead_letters_max_bytes], batch_rows)
        # the roll-ups of the days wholly before the stats cutoff (cumulative within a day; not counted: not stats rows)
        self._delete_batches("stats_hourly", "id", "hour < ?", [rollup_days_before(cutoffs.stats)], batch_rows)
        return Pruned(
            dead_letters=dead,
            events=self._delete_batches("events", "id", "ts < ?", [cutoffs.events], batch_rows),
            drift_reports=self._delete_batches(
                "drift_reports", "id", "ts < ? AND id NOT IN (SELECT max(id) FROM drift_reports GROUP BY scope)",
                [cutoffs.drift_reports], batch_rows),
            stats=self._delete_batches("stats", "rowid", "period_end < ?", [cutoffs.stats], batch_rows),
            samples=self._delete_batches("predictions p", "rowid", _UNREFERENCED_SAMPLE, [cutoffs.samples],
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
                    f"DELETE FROM {name} WHERE {key} IN (SELECT {key} FROM {table} WHERE {where} LIMIT ?)",
                    [*params, batch_rows],
                ).rowcount
            total += n
            if n < batch_rows:
                return total


def prune_ended_incidents(delete: Callable[[str, str, str, list[object], int], int], ended: str, cutoff: float,
                          batch_rows: int) -> int:
    """Ended incidents before `cutoff` (`ended`: the backend's condition on ``incidents i``), their delivery log,
    history and windows first (they refer to them); how many incidents went. `delete`: `_delete_batches`."""
    theirs = f"incident_id IN (SELECT i.id FROM incidents i WHERE {ended})"
    for table, key in (("incident_notifications", "id"), ("incident_events", "id"), ("incident_windows", "trace_id")):
        delete(table, key, theirs, [cutoff], batch_rows)
    return delete("incidents i", "id", ended, [cutoff], batch_rows)
