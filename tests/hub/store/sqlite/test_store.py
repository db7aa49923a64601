"""The SQLite store on real files: migrations, WAL, concurrent writers, and a batch that survives kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from sqlite_utils import Database

from hub.store.sqlite import SqliteHubStore
from hub.store.sqlite.schema import migrations
from tests.hub.store.messages import anomaly, rec


def test_migrations_are_idempotent_and_wal(tmp_path: Path) -> None:
    first = SqliteHubStore(tmp_path / "hub.db")
    first.ingest_batch([rec(anomaly())])
    first.close()
    again = SqliteHubStore(tmp_path / "hub.db")
    conn = again._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    applied = conn.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = ?", [migrations.name]).fetchall()
    every = [m.name for m in migrations.pending(Database(":memory:"))]  # all registered, in order
    assert every[:3] == ["m001_initial", "m002_label_sets", "m003_registry"]
    assert sorted(r[0] for r in applied) == sorted(every)
    assert again.counts().anomalies == 1
    again.close()


def test_threads_write_concurrently(sqlite_store: SqliteHubStore) -> None:
    store = sqlite_store
    def write(device: str) -> None:
        for _ in range(20):
            store.ingest_batch([rec(anomaly(device)) for _ in range(10)])

    threads = [threading.Thread(target=write, args=(f"dev-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.counts().anomalies == 800
    assert store.integrity_ok()


def test_a_batch_survives_kill_9_whole_or_not_at_all(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    SqliteHubStore(db).close()
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[4])!r})
        from hub.store import IngestRecord
        from hub.store.sqlite import SqliteHubStore
        from tests.hub.store.messages import anomaly
        store = SqliteHubStore({str(db)!r})
        print("ready", flush=True)
        while True:
            store.ingest_batch([IngestRecord(anomaly(), 0.0) for _ in range(50)])
    """)
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    store = SqliteHubStore(db)
    assert store.integrity_ok()
    n = store.counts().anomalies
    assert n > 0 and n % 50 == 0
    store.close()
