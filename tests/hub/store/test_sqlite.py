"""The SQLite hub store on real files: migrations, idempotent ingest, presence ordering, dead letters, drift."""

from __future__ import annotations

import doctest
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sqlite_utils import Database

from hub.app.metrics import HubMetrics
from hub.drift import Sketch, fleet_reports
from hub.store import DeadLetter, IngestRecord, open_store, presence
from hub.store.rows import DRIFT_EVENT
from hub.store.sqlite import SqliteHubStore
from hub.store.sqlite.schema import migrations
from shared.errors import ConfigError
from shared.ids import new_id
from shared.messages import Annotation, Anomaly, ModelEvent, Sample, Stats, Status

T0 = 1_700_000_000.0


def anomaly(device: str = "dev-1", ts: float = T0, **kw: object) -> Anomaly:
    fields: dict[str, object] = dict(device_id=device, ts=ts, trace_id=new_id(), window_start=ts - 10,
                                     window_end=ts, score=0.93, threshold=0.5, decision=True,
                                     features=[0.1, -2.5, 1e300, 3.0], model_version="v1")
    return Anomaly(**{**fields, **kw})  # type: ignore[arg-type]


def sample(device: str = "dev-1", ts: float = T0) -> Sample:
    return Sample(device_id=device, ts=ts, trace_id=new_id(), window_start=ts - 10, window_end=ts, score=0.2,
                  threshold=0.5, decision=False, features=[1.0, 2.0], reason="random", model_version="v1")


def stats(device: str = "dev-1", period_end: float = T0, **kw: object) -> Stats:
    fields: dict[str, object] = dict(device_id=device, ts=period_end, period_start=period_end - 60,
                                     period_end=period_end, windows=100, anomalies=3, samples=1, bad_readings=0,
                                     bad_rows=0, inference_errors=0, nan_scores=0,
                                     feature_hist=[[10, 80, 10], [50, 50]], score_hist=[90, 10],
                                     latency_p50_ms=1.5, latency_p99_ms=4.0)
    return Stats(**{**fields, **kw})  # type: ignore[arg-type]


def annotation(device: str = "dev-1", trace_id: str | None = None, ts: float = T0) -> Annotation:
    return Annotation(device_id=device, ts=ts, trace_id=trace_id or new_id(), label="fault",
                      fault_type="bearing", technician_id="tech-7", signal="confirmed", note="noisy")


def status(device: str, state: str, ts: float, **kw: object) -> Status:
    return Status(device_id=device, ts=ts, state=state, **kw)  # type: ignore[arg-type]


def rec(message: object, at: float = T0 + 1) -> IngestRecord:
    return IngestRecord(message, at)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path):
    s = SqliteHubStore(tmp_path / "hub.db")
    yield s
    s.close()


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


def test_every_kind_round_trips(store: SqliteHubStore) -> None:
    a, s, st = anomaly(), sample(), stats()
    n = annotation(trace_id=a.trace_id)
    ev = ModelEvent(device_id="dev-1", ts=T0, event="health_ok", version="v2", metrics={"latency_ms": 2.5})
    result = store.ingest_batch([rec(a), rec(s), rec(st), rec(n), rec(ev)])
    assert result.stored == {"anomaly": 1, "sample": 1, "stats": 1, "annotation": 1, "model_event": 1}

    got = store.prediction(a.trace_id)
    assert got is not None and got.kind == "anomaly" and got.reason is None
    assert got.features == tuple(a.features)  # lossless, 1e300 included
    assert (got.score, got.threshold, got.decision, got.msg_id, got.received_at) == (0.93, 0.5, True, a.msg_id,
                                                                                       T0 + 1)
    assert store.prediction(s.trace_id).reason == "random"  # type: ignore[union-attr]
    assert store.prediction("nope") is None

    [row] = store.stats_between(T0 - 1, T0 + 1)
    assert (row.feature_hist, row.score_hist, row.windows, row.anomalies) == ([[10, 80, 10], [50, 50]], [90, 10],
                                                                             100, 3)
    [note] = store.annotations(trace_id=a.trace_id)
    assert (note.annotation_id, note.label, note.fault_type, note.note) == (n.annotation_id, "fault", "bearing",
                                                                            "noisy")
    [event] = store.model_events(device_id="dev-1")
    assert (event.event, event.version, event.metrics) == ("health_ok", "v2", {"latency_ms": 2.5})


def test_a_message_seen_twice_is_stored_once(store: SqliteHubStore) -> None:
    a, st, n = anomaly(), stats(), annotation()
    first = store.ingest_batch([rec(a), rec(a), rec(st), rec(n)])  # a duplicate inside one batch
    assert first.stored == {"anomaly": 1, "stats": 1, "annotation": 1}
    assert first.duplicates == {"anomaly": 1}
    again = store.ingest_batch([rec(a), rec(st), rec(n)])  # a QoS 1 redelivery later
    assert again.stored == {} and again.duplicates == {"anomaly": 1, "stats": 1, "annotation": 1}
    # The same trace as a sample (a different message) is still the same prediction.
    store.ingest_batch([rec(sample().model_copy(update={"trace_id": a.trace_id}))])
    counts = store.counts()
    assert (counts.anomalies, counts.samples, counts.stats, counts.annotations) == (1, 0, 1, 1)


def test_presence_follows_device_time_and_the_last_will(store: SqliteHubStore) -> None:
    def state() -> tuple[bool, float | None]:
        device = store.device("dev-2")
        assert device is not None
        return device.online, device.status_ts

    store.ingest_batch([rec(status("dev-2", "online", 100.0, agent_version="1.0", site="plant-a",
                                   asset_type="pump", model_version="v1"), at=1000.0)])
    assert state() == (True, 100.0)
    # The last will was set at connect (ts 90) and published by the broker when the link died: it wins.
    result = store.ingest_batch([rec(status("dev-2", "offline", 90.0), at=1001.0)])
    assert result.status_applied == 1 and state() == (False, 100.0)
    # A redelivered online (same ts) and a delayed older online must not bring it back.
    result = store.ingest_batch([rec(status("dev-2", "online", 100.0), at=1002.0),
                                 rec(status("dev-2", "online", 95.0), at=1003.0)])
    assert (result.status_applied, result.status_ignored) == (0, 2) and state() == (False, 100.0)
    # A new session.
    store.ingest_batch([rec(status("dev-2", "online", 200.0, agent_version="1.1"), at=1100.0)])
    assert state() == (True, 200.0)
    # An older session's will that arrived before that online but was written late (another worker).
    store.ingest_batch([rec(status("dev-2", "offline", 150.0), at=1099.0)])
    assert state() == (True, 200.0)

    device = store.device("dev-2")
    assert device is not None
    # A will names nothing: the descriptive fields keep their values; cohort falls back to the site.
    assert (device.agent_version, device.site, device.asset_type, device.model_version, device.cohort) == (
        "1.1", "plant-a", "pump", "v1", "plant-a")
    store.set_cohort("dev-2", "canary")
    assert store.device("dev-2").cohort == "canary"  # type: ignore[union-attr]
    assert (store.counts().devices, store.counts().devices_online) == (1, 1)


def test_any_message_registers_the_device_and_its_activity(store: SqliteHubStore) -> None:
    store.ingest_batch([rec(anomaly("dev-5", ts=50.0), at=500.0), rec(stats("dev-5", period_end=40.0), at=400.0)])
    [device] = store.devices()
    assert (device.device_id, device.online, device.last_seen, device.last_ts, device.first_seen) == (
        "dev-5", False, 500.0, 50.0, 500.0)
    store.ingest_batch([rec(anomaly("dev-5", ts=10.0), at=450.0)])  # older on both clocks: nothing goes back
    assert (store.devices()[0].last_seen, store.devices()[0].last_ts) == (500.0, 50.0)


def test_dead_letters_keep_the_head_of_the_payload_and_count_by_reason(store: SqliteHubStore) -> None:
    huge = b"x" * 100_000
    store.ingest_batch([], [DeadLetter("fleetloop/dev-1/anomaly", huge, "too_large", "100000 bytes", T0,
                                       device_id="dev-1")])
    store.add_dead_letter("fleetloop/dev-1/stats", b"{", "bad_json", "EOF", T0 + 1, device_id="dev-1")
    store.add_dead_letter("fleetloop/dev-2/stats", b"{}", "schema", "d" * 10_000, T0 + 2)
    assert store.dead_letter_counts() == {"bad_json": 1, "schema": 1, "too_large": 1}
    newest, middle, oldest = store.dead_letters()
    assert (newest.reason, len(newest.detail), newest.device_id) == ("schema", 2000, None)
    assert (middle.payload, middle.payload_size, middle.device_id) == (b"{", 1, "dev-1")
    assert (len(oldest.payload), oldest.payload_size) == (4096, 100_000)
    assert [d.reason for d in store.dead_letters(reason="bad_json")] == ["bad_json"]
    assert store.counts().dead_letters == 3


def test_counts_beyond_64_bits_are_rejected_not_fatal(store: SqliteHubStore) -> None:
    bad, good = stats(windows=2**64), stats()
    bad_hist = stats(feature_hist=[[2**70]])
    result = store.ingest_batch([rec(bad), rec(good), rec(bad_hist)])
    assert [(r.index, r.reason) for r in result.rejected] == [(0, "out_of_range"), (2, "out_of_range")]
    assert result.stored == {"stats": 1}
    assert [s.msg_id for s in store.stats_between(0, T0 + 1)] == [good.msg_id]


def test_range_queries_filter_by_time_kind_and_device(store: SqliteHubStore) -> None:
    msgs = [anomaly("dev-1", ts=T0), sample("dev-2", ts=T0 + 10), anomaly("dev-3", ts=T0 + 20)]
    store.ingest_batch([rec(m) for m in msgs] + [rec(stats(d, period_end=T0 + i)) for i, d in
                                                 enumerate(["dev-1", "dev-2", "dev-3"])])
    assert [p.device_id for p in store.predictions(T0, T0 + 20)] == ["dev-1", "dev-2"]  # end is exclusive
    assert [p.device_id for p in store.predictions(T0, T0 + 21, kind="anomaly")] == ["dev-1", "dev-3"]
    assert [p.device_id for p in store.predictions(0, 2e9, device_ids=["dev-3"], limit=5)] == ["dev-3"]
    assert store.predictions(0, 2e9, device_ids=[]) == []
    assert [s.device_id for s in store.stats_between(T0 + 1, T0 + 3)] == ["dev-2", "dev-3"]
    assert [s.device_id for s in store.stats_between(T0, T0 + 3, device_ids=["dev-1", "dev-3"])] == ["dev-1", "dev-3"]
    store.ingest_batch([rec(annotation("dev-1", ts=T0 + i)) for i in range(5)])
    assert len(store.annotations(since=T0 + 1, until=T0 + 4)) == 3
    assert len(store.annotations(device_id="dev-1", limit=2)) == 2


def test_drift_report_round_trips_and_its_verdict_is_an_event(store: SqliteHubStore) -> None:
    rng = np.random.default_rng(7)
    edges = [np.array([-1.0, 0.0, 1.0]), np.array([0.5])]
    reference = Sketch.from_values(rng.normal(size=(2000, 2)), edges)
    shifted = Sketch.from_values(rng.normal(loc=[1.0, 0.0], size=(2000, 2)), edges)
    report = fleet_reports(reference, {"dev-1": shifted}, {}, ["temp.mean", "vib.mean"])[0]
    assert report.verdict == "drift"

    report_id = store.save_drift_report(report.to_dict(), report.scope, report.verdict, T0)
    [row] = store.drift_reports()
    assert (row.id, row.scope, row.verdict, row.ts) == (report_id, "fleet", "drift", T0)
    assert row.report == report.to_dict()
    assert store.drift_reports(scope="device:dev-1") == []

    # The verdict is an event, written with the report: what the retraining trigger consumes.
    [event] = store.events(kind=DRIFT_EVENT)
    assert event.payload == {"report_id": report_id, "scope": "fleet", "reason": report.reason,
                             "drifted_features": ["temp.mean"]}
    calm = fleet_reports(reference, {"dev-1": reference}, {}, ["temp.mean", "vib.mean"])[0]
    store.save_drift_report(calm.to_dict(), calm.scope, calm.verdict, T0 + 1)
    assert len(store.events(kind=DRIFT_EVENT)) == 1 and len(store.drift_reports()) == 2

    later = store.record_event("retrain_requested", {"because": event.id})
    assert [e.kind for e in store.events()] == [DRIFT_EVENT, "retrain_requested"]
    assert [e.id for e in store.events(since_id=event.id)] == [later]

    metrics = HubMetrics()
    metrics.set_drift_report(report.to_dict())
    exposition = metrics.render()[0].decode()
    assert 'fleetloop_hub_drift_detected{scope="fleet"} 1.0' in exposition
    assert 'fleetloop_hub_drift_psi{feature="temp.mean",scope="fleet"}' in exposition


def test_threads_write_concurrently(store: SqliteHubStore) -> None:
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


def test_open_store_takes_sqlite_urls_and_refuses_postgresql_for_now(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'a' / 'hub.db'}")
    assert isinstance(store, SqliteHubStore) and store.path == tmp_path / "a" / "hub.db"
    store.close()
    with pytest.raises(ConfigError, match="PostgreSQL hub store is not built yet"):
        open_store("postgresql://hub@db/fleetloop")
    for bad in ("hub.db", "mysql://x/y", "sqlite://"):
        with pytest.raises(ConfigError, match="store URL"):
            open_store(bad)


def test_a_batch_survives_kill_9_whole_or_not_at_all(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    SqliteHubStore(db).close()
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from hub.store import IngestRecord
        from hub.store.sqlite import SqliteHubStore
        from tests.hub.store.test_sqlite import anomaly
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


def test_docstring_examples_run() -> None:
    result = doctest.testmod(presence)
    assert result.attempted > 0 and result.failed == 0
