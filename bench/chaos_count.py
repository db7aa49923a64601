"""The chaos run's count, from the databases after the drain: what each agent published (its highest sequence
number), what the hub stored (distinct msg_id per device over the message tables), duplicates (rows sharing an
idempotency key) and predictions served by a model version the device was not approved to serve.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.field.harness import FieldFleet

# every outbox message lands in one of these, keyed by its msg_id (predictions by trace_id too)
MESSAGE_TABLES = ("predictions", "stats", "annotations", "model_events")
DROPPED = re.compile(r"disk full: dropped \d+ rows \((\d+) so far\)")


@dataclass
class Tally:
    published: dict[str, int] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    outbox_left: dict[str, int] = field(default_factory=dict)
    unapproved: int = 0
    unapproved_detail: dict[str, dict[str, int]] = field(default_factory=dict)
    refusals: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    agent_dropped: int = 0


def read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def count(fleet: FieldFleet, agent_db: Callable[[str], Path], devices: list[str], approved: dict[str, set[str]],
          withdrawn: dict[str, list[tuple[str, float]]]) -> Tally:
    t = Tally()
    for device in devices:
        with read_only(agent_db(device)) as conn:
            row = conn.execute("SELECT value FROM state WHERE key = 'outbox.next_seq'").fetchone()
            t.published[device] = int(row[0]) - 1 if row else 0
            agent_rows = conn.execute("SELECT model_version, ts FROM predictions").fetchall()
        _unapproved(t, "agent", device, agent_rows, approved, withdrawn)
        log = fleet.root / "agents" / f"{device}.log"
        if log.exists():
            t.agent_dropped += sum(max(map(int, m), default=0) for m in [DROPPED.findall(log.read_text())])
    with read_only(fleet.hub_dir / "hub.db") as conn:
        union = " UNION ALL ".join(f"SELECT device_id, msg_id FROM {table}" for table in MESSAGE_TABLES)
        for device, rows, distinct in conn.execute(
                f"SELECT device_id, count(*), count(DISTINCT msg_id) FROM ({union}) GROUP BY device_id"):
            if device in t.published:
                t.stored[device] = distinct
                t.duplicates[device] = rows - distinct
        for device in devices:
            hub_rows = conn.execute("SELECT model_version, ts FROM predictions WHERE device_id = ?",
                                    (device,)).fetchall()
            _unapproved(t, "hub", device, hub_rows, approved, withdrawn)
        t.refusals = int(conn.execute("SELECT count(*) FROM model_events WHERE event = 'refused'").fetchone()[0])
        t.dead_letters = dict(conn.execute("SELECT reason, count(*) FROM dead_letters GROUP BY reason").fetchall())
    return t


def _unapproved(t: Tally, side: str, device: str, rows: list[tuple[str | None, float]],
                approved: dict[str, set[str]], withdrawn: dict[str, list[tuple[str, float]]]) -> None:
    """Count rows served by a version never approved for `device`, or by one after it was withdrawn."""
    ok = approved.get(device, {"v1"})
    late = withdrawn.get(device, [])
    for version, ts in rows:
        if version is None:
            continue
        if version not in ok or any(version == v and ts > after for v, after in late):
            t.unapproved += 1
            key = f"{side}:{device}"
            t.unapproved_detail.setdefault(key, {})
            t.unapproved_detail[key][version] = t.unapproved_detail[key].get(version, 0) + 1
