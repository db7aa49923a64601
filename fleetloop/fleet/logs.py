"""The agents' own prediction logs, read-only while they run (SQLite in WAL mode lets a reader in).

`AgentLogs` is the on-site view the technicians' desk needs (`sim.desk.DeviceLogs`) and the raw material of
the story's metrics: every window a device scored, with its features, the version that scored it and its
decision. It knows the agent's ``predictions`` table (``agent/db.py``) and nothing else of the agent.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim.desk import LoggedPrediction

__all__ = ["AgentLogs", "DeviceLog"]


@dataclass(frozen=True, eq=False)
class DeviceLog:
    """Every prediction one device logged, in order (arrays of one length)."""

    device_id: str
    ts: np.ndarray  # float64: when the window was scored (wall clock)
    window_end: np.ndarray  # float64: the timestamp of the window's last reading (the simulator's clock)
    model_version: np.ndarray  # str
    features: np.ndarray  # float32 (n, n_features)
    score: np.ndarray  # float64, NaN where the model gave none
    decision: np.ndarray  # bool: the alarm the device raised

    def __len__(self) -> int:
        return int(self.ts.shape[0])


class AgentLogs:
    """The logs of the agents whose data dirs are ``root/<device_id>`` (``agent.db`` in each)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, device_id: str) -> Path:
        return self.root / device_id / "agent.db"

    def _rows(self, device_id: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of a read-only query; none while the agent has not created its database or table yet."""
        if not self.path(device_id).exists():
            return []
        try:
            conn = sqlite3.connect(f"file:{self.path(device_id)}?mode=ro", uri=True, timeout=10)
        except sqlite3.OperationalError:
            return []
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc) or "unable to open" in str(exc):
                return []
            raise
        finally:
            conn.close()

    def logged(self, device_id: str, *, after_row: int, until_ts: float) -> list[LoggedPrediction]:
        """`sim.desk.DeviceLogs`: predictions after row `after_row` made at ``ts <= until_ts``."""
        rows = self._rows(device_id, "SELECT id, trace_id, ts, window_end, model_version, reported FROM predictions "
                          "WHERE id > ? AND ts <= ? ORDER BY id", after_row, until_ts)
        return [LoggedPrediction(int(r[0]), str(r[1]), device_id, float(r[2]), float(r[3]), r[4], r[5])
                for r in rows]

    def first_scored_after(self, device_id: str, window_end: float) -> float | None:
        """When the device first scored a window ending at or after `window_end` (None: not yet)."""
        rows = self._rows(device_id, "SELECT min(ts) FROM predictions WHERE window_end >= ?", window_end)
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    def versions_since(self, device_id: str, ts: float) -> set[str]:
        """The model versions that scored the device's windows after `ts`."""
        return {str(r[0]) for r in self._rows(device_id, "SELECT DISTINCT model_version FROM predictions "
                                                        "WHERE ts > ?", ts)}

    def read(self, device_id: str) -> DeviceLog:
        """The device's whole log (after the agent stopped, or a consistent snapshot while it runs)."""
        rows = self._rows(device_id, "SELECT ts, window_end, model_version, features, score, decision "
                          "FROM predictions ORDER BY id")
        n_features = len(rows[0][3]) // 4 if rows else 0
        features = np.frombuffer(b"".join(r[3] for r in rows), dtype=np.float32).reshape(len(rows), n_features)
        return DeviceLog(
            device_id=device_id,
            ts=np.array([r[0] for r in rows], dtype=np.float64),
            window_end=np.array([r[1] for r in rows], dtype=np.float64),
            model_version=np.array([str(r[2]) for r in rows], dtype=str),
            features=features,
            score=np.array([np.nan if r[4] is None else r[4] for r in rows], dtype=np.float64),
            decision=np.array([bool(r[5]) for r in rows], dtype=bool),
        )
