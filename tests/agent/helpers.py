"""Helpers for agent tests: settings against a test broker, reading the agent database from outside."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from agent.settings import AgentSettings
from fleetloop.devbroker import DevBroker

FAST_LIVES = {"life_steps": (150, 300), "degradation_tau": (30.0, 60.0), "random_start_age": True}


def agent_settings(tmp_path: Path, broker: DevBroker, device: str, model_dir: Path, **overrides: Any) -> AgentSettings:
    values: dict[str, Any] = {
        "device_id": device,
        "dev_mode": True,  # unsigned test models; tests of signed models pass model_public_key
        "data_dir": tmp_path / device,
        "mqtt_host": broker.host,
        "mqtt_port": broker.port,
        "mqtt_password": broker.password(device),
        "initial_model": model_dir,
        "stats_interval_s": 1.0,
        "sample_rate": 0.05,
        "source": {"kind": "sim", "rate": 0, "seed": 11, "sim_config": FAST_LIVES},
    }
    values.update(overrides)
    return AgentSettings(**values)


def anomaly_trace_ids(db_path: Path) -> set[str]:
    """Trace ids of every anomaly the agent logged, read through a separate connection."""
    return {r[0] for r in _read(db_path, "SELECT trace_id FROM predictions WHERE decision = 1")}


def outbox_size(db_path: Path) -> int:
    rows = _read(db_path, "SELECT count(*) FROM outbox")
    return int(rows[0][0]) if rows else 0


def _read(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of `sql` through a separate read-only connection; none while the agent is still creating the schema."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()
