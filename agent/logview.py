"""Read-only views of the agent's local log for the technician at the machine: the recent alarms."""

from __future__ import annotations

from typing import Any

from agent.db import AgentDB


def anomalies(db: AgentDB, *, limit: int, start: float | None = None, end: float | None = None) -> list[dict[str, Any]]:
    """The newest `limit` predictions the model flagged (decision 1), newest first, within [start, end] if given."""
    where, params = "decision = 1", list[float]()
    if start is not None:
        where, params = where + " AND ts >= ?", [*params, start]
    if end is not None:
        where, params = where + " AND ts <= ?", [*params, end]
    return db.query(
        f"SELECT trace_id, ts, score, model_version, unit, window_start, window_end FROM predictions "
        f"WHERE {where} ORDER BY ts DESC LIMIT ?", [*params, limit])
