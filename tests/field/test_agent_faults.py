"""Faults on a production-mode agent (issue 10, items 2 and 8): a bad sensor feed, a full disk, a damaged or empty
agent.db. The agent degrades and reports, or stops with one line naming the fix; it never crash-loops."""

from __future__ import annotations

import errno
import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetloop.devbroker import HUB_USER
from shared.messages import Stats
from sim import SENSORS
from tests.field.harness import FieldFleet, fleetloop
from tests.fixtures.broker import Clients, Collector, publish, subscribe

pytestmark = pytest.mark.slow


def _hub_stats(fleet: FieldFleet, device: str) -> list:
    store = fleet.store()
    try:
        return store.stats_between(0, 1e12, [device])
    finally:
        store.close()


def _agent_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(fleetloop("agent", *args), capture_output=True, text=True, timeout=120, check=False)


def _run_until_it_stops(fleet: FieldFleet, device: str, timeout: float = 60.0) -> int:
    proc = fleet.agents[device]
    fleet.wait(lambda: proc.poll() is not None, f"{device} to stop", timeout)
    return proc.returncode


# --- a bad sensor feed (item 2) -----------------------------------------------------------------------------


def test_bad_sensor_values_are_counted_and_the_agent_keeps_scoring(field_fleet: FieldFleet,
                                                                   mqtt_clients: Clients) -> None:
    fleet, device = field_fleet, "dev-feed"
    fleet.start_hub()
    fleet.broker.add_device("sim")  # the plant sensors' user: may write sensors/+/readings only
    topic = f"sensors/{device}/readings"
    fleet.start_agent(device, source={"kind": "mqtt", "topic": topic, "sensors": list(SENSORS)})
    sensors = mqtt_clients.connect(fleet.broker, "sim")
    fleet.wait(lambda: bool(_hub_stats(fleet, device)), "the agent's first stats (it is subscribed by then)")
    good = {s: 20.0 + i for i, s in enumerate(SENSORS)}

    def bad(kind: int, ts: float) -> bytes:
        if kind == 4:  # bytes that are not UTF-8 (an encoded surrogate)
            return b'{"ts": %r, "values": {"rpm": 1}, "unit": "pump-\xed\xb3\xbf"}' % ts
        doc = [{"values": {**good, "pressure": 1e39}}, {"values": {**good, "flow": -1e39}},
               {"values": good, "unit": "u" * 65}, {"values": good, "unit": "pump-\udcff"}][kind]
        return json.dumps({"ts": ts, **doc}).encode()

    t0 = time.time()
    for i in range(400):  # each bad kind 40 times over, between good readings: a feed that keeps sending it
        ts = t0 + i * 0.01
        raw = bad(i // 2 % 5, ts) if i % 2 else json.dumps({"ts": ts, "values": good, "unit": "pump-1"}).encode()
        publish(sensors, topic, raw)

    def counted() -> bool:
        rows = _hub_stats(fleet, device)
        return sum(r.bad_rows for r in rows) >= 200 and sum(r.windows for r in rows) > 0

    fleet.wait(counted, "the 200 bad readings counted in the hub's stats, and windows scored", 60)
    assert fleet.agents[device].poll() is None, fleet.log_tail(device)
    assert "Traceback" not in fleet.log_tail(device, 100_000)


# --- a full disk (item 8) ------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 40 MB tmpfs that fills up for real (needs root to mount; unmounted afterwards)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (root needed): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> int:
    """Write zeros to `path` until the disk is full; return the bytes written."""
    written = 0
    chunk = b"\0" * 65536
    with path.open("wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                for size in (4096, 512, 1):
                    try:
                        while True:
                            written += f.write(b"\0" * size)
                    except OSError:
                        pass
                return written


def test_a_full_disk_degrades_reports_and_recovers(field_fleet: FieldFleet, small_disk: Path,
                                                   mqtt_clients: Clients) -> None:
    fleet, device = field_fleet, "dev-full"
    data_dir = small_disk / device
    fleet.start_hub()
    collector = Collector()
    hub = mqtt_clients.connect(fleet.broker, HUB_USER, collector=collector)
    subscribe(hub, f"{fleet.broker.prefix}/{device}/stats")

    def seen() -> list[Stats]:
        return [m.decode(Stats) for m in collector.messages]

    proc = fleet.start_agent(device, data_dir=str(data_dir), sample_rate=1.0,  # the default 8 MB disk reserve
                             source={"kind": "sim", "rate": 400, "seed": 5})
    fleet.wait(lambda: len(seen()) >= 2, "stats from the agent")
    filler = small_disk / "filler"
    _fill(filler)
    full_at = time.time()
    fleet.wait(lambda: proc.poll() is not None or "disk full" in fleet.log_tail(device, 100_000),
               "the agent to notice the full disk")
    assert proc.poll() is None, f"the agent died on a full disk:\n{fleet.log_tail(device)}"

    def reported() -> bool:
        assert proc.poll() is None, fleet.log_tail(device)
        return any(s.storage_dropped > 0 and s.windows > 0 and s.period_start >= full_at for s in seen())

    fleet.wait(reported, "stats that report dropped rows while the agent keeps scoring", 60)
    filler.unlink()  # space is back
    fleet.wait(lambda: "disk space is back" in fleet.log_tail(device, 100_000), "the agent to recover", 60)
    back_at = time.time()
    fleet.wait(lambda: any(s.period_start >= back_at and s.windows > 0 and s.storage_dropped == 0 for s in seen()),
               "healthy stats after recovery", 60)
    assert (data_dir / "agent.db.reserve").exists()
    assert proc.poll() is None
    status = _agent_cli("status", "--device-id", device, "--data-dir", str(data_dir))
    assert json.loads(status.stdout)["integrity"] == "ok", status.stderr


# --- a damaged or empty agent.db (item 8) ------------------------------------------------------------------


def _run_once_and_stop(fleet: FieldFleet, device: str) -> Path:
    fleet.start_hub()
    fleet.start_agent(device)
    fleet.wait(lambda: bool(_hub_stats(fleet, device)), f"stats from {device}")
    assert fleet.stop_agent(device) == 0
    return fleet.agent_db(device)


def _start_and_serve(fleet: FieldFleet, device: str) -> None:
    before = fleet.log_tail(device, 1_000_000).count("serving model v1")
    fleet.start_agent(device)
    fleet.wait(lambda: fleet.log_tail(device, 1_000_000).count("serving model v1") > before, f"{device} to serve")


def _one_line_error(fleet: FieldFleet, device: str, *needles: str) -> str:
    assert _run_until_it_stops(fleet, device) == 2, fleet.log_tail(device)
    log = fleet.log_tail(device, 100_000)
    assert "Traceback" not in log, log[-3000:]
    last = [line for line in log.splitlines() if line.startswith("fleetloop agent: error:")]
    assert len(last) == 1, log[-3000:]
    for needle in needles:
        assert needle in last[0], last[0]
    return last[0]


def test_a_corrupt_page_stops_the_agent_with_the_recovery_command(field_fleet: FieldFleet) -> None:
    fleet, device = field_fleet, "dev-corrupt"
    db = _run_once_and_stop(fleet, device)
    conn = sqlite3.connect(db)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'predictions'").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    model_state = "SELECT key, value FROM state WHERE key LIKE 'model.%' ORDER BY key"
    state = conn.execute(model_state).fetchall()
    assert state, "no model pointer to carry over"
    seq_before = int(conn.execute("SELECT value FROM state WHERE key = 'outbox.next_seq'").fetchone()[0])
    conn.close()
    with db.open("r+b") as f:  # garbage over the predictions table's root page
        f.seek((root - 1) * page_size)
        f.write(b"\xa5" * page_size)
    fleet.start_agent(device)
    _one_line_error(fleet, device, str(db), "fleetloop agent db recover --data-dir")

    done = _agent_cli("db", "recover", "--data-dir", str(db.parent))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["rows_copied"]["state"] >= 1 and Path(report["damaged_copy"]).exists()
    _start_and_serve(fleet, device)
    assert fleet.agents[device].poll() is None
    assert fleet.stop_agent(device) == 0
    conn = sqlite3.connect(db)
    assert conn.execute(model_state).fetchall() == state  # the model pointer
    # the sequence numbers carried over too: they went on from where the damaged database stopped (never back to 1)
    assert int(conn.execute("SELECT value FROM state WHERE key = 'outbox.next_seq'").fetchone()[0]) >= seq_before
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_a_zero_byte_database_is_refused_unless_the_operator_resets_it(field_fleet: FieldFleet) -> None:
    fleet, device = field_fleet, "dev-empty"
    db = _run_once_and_stop(fleet, device)
    for extra in (db.with_name("agent.db-wal"), db.with_name("agent.db-shm")):
        extra.unlink(missing_ok=True)
    db.write_bytes(b"")
    fleet.start_agent(device)
    _one_line_error(fleet, device, str(db), "0 bytes", "fleetloop agent db reset --data-dir")
    assert db.stat().st_size == 0  # refused, not silently replaced

    unconfirmed = _agent_cli("db", "reset", "--data-dir", str(db.parent))
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    assert _agent_cli("db", "reset", "--data-dir", str(db.parent), "--yes").returncode == 0
    assert list(db.parent.glob("agent.db.reset-*"))
    _start_and_serve(fleet, device)
    assert fleet.stop_agent(device) == 0
