"""Hub benchmark: broker throughput, IngestWorker rate into SQLite (batch 1 and 100), fleet drift time.

Everything runs on loopback against a private `DevBroker` (never the machine's broker on 1883):

1. raw: K device clients in a child process (``bench/hub.py --publish JOB``) publish N realistic
   Anomaly/Stats payloads (shared.codec, QoS 1); a do-nothing paho subscriber on a shared subscription,
   as the hub subscribes, receives them. msgs/s = N / (go → last message received).
2. hub: the same stream into a real `IngestWorker` and a fresh SQLite file, once with ``batch_size=1``
   and once with ``batch_size=100``. msgs/s = N / (go → last message committed); lost = acknowledged by
   the broker to the publisher but not in the database.

Steps 1 and 2 run once per wire format (``--formats json,msgpack``): the payloads are encoded in it and published
with its MQTT 5 content type, as agents send them, to the raw subscriber and the hub alike (batch=1 only for the
first format). ``ingest_vs_raw`` is the hub's rate at batch 100 over the raw subscriber's, in the same format.
3. drift: `fleet_reports` over 1,000 synthetic device sketches x 24 features, and `DriftService.run` on a
   store holding 1,000 devices' stats (read, sketch, compare, store 1,000+ reports, set gauges).

Plus a breakdown of the ingest path's per-message costs (decode, store at batch 1 and 100) to explain the
hub's rate. The publisher runs in its own process, so the measuring process holds only the consumer.

    .venv/bin/python bench/hub.py [--messages N] [--devices K] [--json]

With ``--json`` the last line of stdout is one JSON object (``raw_msgs_per_s``, ``hub_msgs_per_s``,
``ingest_vs_raw`` (= ``hub_vs_raw``), ``hub_msgs_per_s_batch1``, ``lost``, ``fleet_drift_s``, ``drift_service_s``,
…, for the first format; ``formats``: per format, the rates, ``ingest_vs_raw`` and CPU µs per message).
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as a script, this file's directory comes first on sys.path and this module would shadow the
# `hub` package: put the repository root there instead.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

import numpy as np  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from shared.features import WindowSpec, feature_names  # noqa: E402
from shared.manifest import MANIFEST_FILE, ModelManifest, Provenance, Reference, TrainingInfo, dump_manifest  # noqa: E402

log = logging.getLogger("bench.hub")

DEFAULT_MESSAGES = 20_000
DEFAULT_DEVICES = 10
STATS_EVERY = 10  # one Stats message per 10 messages, the rest anomalies
SENSORS = ("temperature", "vibration", "current", "pressure")  # x 6 statistics = 24 features
N_BINS = 10
DRIFT_DEVICES = 1_000
DRIFT_COHORTS = (10, 2)  # sites x asset types
DRIFT_ROWS = 4  # stats rows per device in the drift window
DRIFT_WINDOWS = 600  # windows per stats row
VERSION = "vbench"
TARGETS = {"hub_vs_raw": 0.8, "lost": 0, "fleet_drift_s": 1.0}
PASS_TIMEOUT_S = 60.0


# -- payloads ----------------------------------------------------------------------------------------
def bench_manifest() -> ModelManifest:
    """A synthetic 24-feature manifest: decile edges of a standard normal, 100,000 reference windows."""
    from statistics import NormalDist

    from models.reference import SCORE_BIN_EDGES

    edges = [round(NormalDist().inv_cdf(k / N_BINS), 6) for k in range(1, N_BINS)]
    names = feature_names(list(SENSORS))
    score_hist = [int(60_000 * 0.6**k) + 100 for k in range(len(SCORE_BIN_EDGES) + 1)]
    return ModelManifest(
        version=VERSION, created="2025-01-01T00:00:00Z", model_family="gbc",
        window=WindowSpec(sensors=list(SENSORS), size=30, step=5), feature_names=names, input_name="features",
        output_name="probabilities", threshold=0.5,
        reference=Reference(bin_edges=[edges] * len(names), histograms=[[10_000] * N_BINS] * len(names),
                            score_bin_edges=list(SCORE_BIN_EDGES), score_histogram=score_hist),
        training=TrainingInfo(data_fingerprint="0" * 64, n_samples=100_000, n_positive=5_000, seed=0,
                              data_kind="simulated"),
        provenance=Provenance(created_by="bench/hub.py", reason="benchmark"), library_versions={}, metrics={},
        onnx_sha256="0" * 64,
    )  # fmt: skip


def draw_stats(rng: np.random.Generator, manifest: ModelManifest, device: str, period_end: float,
               windows: int, shift: int = 0) -> Any:
    """A Stats message with `windows` windows drawn from the reference (features 0-1 moved `shift` bins up)."""
    from shared.messages import Stats

    ref = manifest.reference
    hist = []
    for j, counts in enumerate(ref.histograms):
        p = np.asarray(counts, dtype=np.float64) / sum(counts)
        if shift and j < 2:
            p = np.concatenate([np.zeros(shift), p[:-shift - 1], [p[-shift - 1:].sum()]])
        hist.append(rng.multinomial(windows, p).tolist())
    score = rng.multinomial(windows, np.asarray(ref.score_histogram) / sum(ref.score_histogram)).tolist()
    return Stats(device_id=device, ts=period_end, model_version=manifest.version, period_start=period_end - 60,
                 period_end=period_end, windows=windows, anomalies=int(sum(score[10:])), samples=3, bad_readings=0,
                 bad_rows=0, inference_errors=0, nan_scores=0, feature_hist=hist, score_hist=score,
                 latency_p50_ms=0.41, latency_p99_ms=1.7)


def payloads(prefix: str, devices: list[str], n: int, seed: int, fmt: str = "json") -> list[tuple[str, str, bytes]]:
    """(device, topic, payload) for `n` messages in wire format `fmt`: anomalies with 24 features, every 10th a
    Stats message."""
    from shared.codec import encode
    from shared.ids import new_id
    from shared.messages import Anomaly
    from shared.topics import Kind, Topics

    topics = Topics(prefix)
    manifest = bench_manifest()
    rng = np.random.default_rng(seed)
    now = time.time()
    out = []
    for i in range(n):
        device = devices[i % len(devices)]
        if i % STATS_EVERY == 0:
            message: Any = draw_stats(rng, manifest, device, now, 60)
            kind = Kind.STATS
        else:
            score = float(rng.uniform(0.5, 1.0))
            message = Anomaly(device_id=device, ts=now, model_version=VERSION, trace_id=new_id(),
                              window_start=now - 30, window_end=now, unit="pump-1", score=score, threshold=0.5,
                              decision=True, features=rng.normal(size=24).astype(np.float32).tolist())
            kind = Kind.ANOMALY
        out.append((device, topics.topic(device, kind), encode(message, fmt)))  # type: ignore[arg-type]
    return out


# -- child: the devices -------------------------------------------------------------------------------
def run_publisher(job: dict[str, Any]) -> dict[str, Any]:
    """Connect K device clients, say ``ready``, wait for ``go`` on stdin, publish everything at QoS 1."""
    from infra.mqtt import publish_properties
    from shared.codec import CONTENT_TYPES

    messages = payloads(job["prefix"], list(job["devices"]), job["messages"], job["seed"], job["format"])
    # as agents send: MessagePack with its content type, JSON without one
    props = None if job["format"] == "json" else publish_properties(content_type=CONTENT_TYPES[job["format"]])
    clients: dict[str, mqtt.Client] = {}
    connected = threading.Semaphore(0)
    for device, password in job["devices"].items():
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{device}-{uuid.uuid4().hex[:6]}",
                             protocol=mqtt.MQTTv5)
        client.username_pw_set(device, password)
        client.max_inflight_messages_set(100)  # the broker's receive maximum (mosquitto.conf)
        client.on_connect = lambda *args, **kw: connected.release()
        client.connect(job["host"], job["port"], keepalive=60)
        client.loop_start()
        clients[device] = client
    for _ in clients:
        if not connected.acquire(timeout=10):
            raise SystemExit("publisher: device clients did not connect")
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("publisher: no go")
    started = time.perf_counter()
    infos = [clients[device].publish(topic, payload, qos=1, properties=props) for device, topic, payload in messages]
    queued = time.perf_counter() - started
    deadline = time.monotonic() + PASS_TIMEOUT_S
    for info in infos:
        info.wait_for_publish(max(0.01, deadline - time.monotonic()))
    acked_s = time.perf_counter() - started
    published = sum(1 for info in infos if info.is_published())
    for client in clients.values():
        client.disconnect()
        client.loop_stop()
    return {"published": published, "publish_s": acked_s, "queue_s": queued,
            "payload_bytes": sum(len(p) for _, _, p in messages)}


# -- parent: the consumers ------------------------------------------------------------------------------
class Publisher:
    """The publishing child process: start it, wait for ``ready``, then `go()` and `result()`."""

    def __init__(self, job_path: Path, job: dict[str, Any]) -> None:
        job_path.write_text(json.dumps(job))
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--publish", str(job_path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self._out: IO[str] = self.proc.stdout
        self._in: IO[str] = self.proc.stdin
        line = self._out.readline().strip()
        if line != "ready":
            self.proc.kill()
            raise SystemExit(f"publisher did not start (said {line!r}, exit {self.proc.wait()})")

    def go(self) -> float:
        self._in.write("go\n")
        self._in.flush()
        return time.perf_counter()

    def result(self) -> dict[str, Any]:
        out = self._out.read()
        if self.proc.wait(PASS_TIMEOUT_S) != 0:
            raise SystemExit(f"publisher failed (exit {self.proc.returncode})")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result


def publisher_job(broker: Any, n: int, seed: int, fmt: str) -> dict[str, Any]:
    return {"host": broker.host, "port": broker.port, "prefix": broker.prefix, "messages": n, "seed": seed,
            "format": fmt, "devices": {d: broker.password(d) for d in broker.devices}}


def cpu_times() -> dict[str, float]:
    """CPU seconds of this process (``process``) and of each live thread by name (Linux /proc; else none)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = {"process": usage.ru_utime + usage.ru_stime}
    tick = os.sysconf("SC_CLK_TCK")
    for thread in threading.enumerate():
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after the command name: field 3 (state) onwards
        out[thread.name] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


def cpu_us_per_msg(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """Microseconds of CPU per message: the whole process, paho's network thread, the ingest writer."""
    def used(prefix: str) -> float:
        return sum(after[k] - before.get(k, 0.0) for k in after if k.startswith(prefix))

    return {name: used(prefix) / n * 1e6 for name, prefix in
            (("process", "process"), ("network", "paho-mqtt-client-"), ("writer", "ingest-writer-"))}


def wait_until(done: Any, progress: Any, timeout: float = PASS_TIMEOUT_S, stall_s: float = 5.0) -> None:
    """Poll until `done()`; give up after `timeout` or when `progress()` has not moved for `stall_s`."""
    deadline = time.monotonic() + timeout
    last, last_change = progress(), time.monotonic()
    while not done() and time.monotonic() < deadline:
        time.sleep(0.005)
        now_progress = progress()
        if now_progress != last:
            last, last_change = now_progress, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            break


def raw_pass(broker: Any, workdir: Path, n: int, seed: int, fmt: str = "json") -> dict[str, Any]:
    """A do-nothing subscriber on a shared subscription: what the broker and paho deliver at most."""
    from fleetloop.devbroker import HUB_USER
    from shared.topics import Kind, Topics

    topics = Topics(broker.prefix)
    count = [0]
    last = [0.0]
    ready = threading.Event()

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        count[0] += 1
        last[0] = time.perf_counter()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(HUB_USER, broker.password(HUB_USER))
    client.on_message = on_message
    client.on_subscribe = lambda *args, **kw: ready.set()
    client.connect(broker.host, broker.port, keepalive=60)
    client.loop_start()
    client.subscribe([(f"$share/benchraw/{topics.all_devices(k)}", 1) for k in (Kind.ANOMALY, Kind.STATS)])
    if not ready.wait(10):
        raise SystemExit("raw subscriber did not subscribe")
    publisher = Publisher(workdir / "raw.json", publisher_job(broker, n, seed, fmt))
    before = cpu_times()
    t0 = publisher.go()
    wait_until(lambda: count[0] >= n, lambda: count[0])
    cpu = cpu_us_per_msg(before, cpu_times(), max(1, count[0]))
    pub = publisher.result()
    client.disconnect()
    client.loop_stop()
    elapsed = last[0] - t0
    log.info("raw %s: %d of %d received in %.2f s", fmt, count[0], pub["published"], elapsed)
    return {"received": count[0], "published": pub["published"], "s": elapsed, "msgs_per_s": count[0] / elapsed,
            "publish_msgs_per_s": pub["published"] / pub["publish_s"], "payload_bytes": pub["payload_bytes"],
            "cpu_us": cpu}


def hub_pass(broker: Any, workdir: Path, n: int, seed: int, batch_size: int, run: int = 0,
             fmt: str = "json") -> dict[str, Any]:
    """The real IngestWorker into a fresh SQLite file; rate to the last commit, and what is missing."""
    from fleetloop.devbroker import HUB_USER
    from hub.mqtt import IngestWorker
    from hub.store.sqlite import SqliteHubStore

    store = SqliteHubStore(workdir / f"hub-{fmt}-batch{batch_size}-{run}.db")
    last_commit = [0.0]
    worker = IngestWorker(host=broker.host, port=broker.port, username=HUB_USER,
                          password=broker.password(HUB_USER), prefix=broker.prefix, store=store,
                          share_group=f"bench{batch_size}-{run}", client_id=f"bench-ingest-{uuid.uuid4().hex[:6]}",
                          batch_size=batch_size, session_expiry_s=0)  # no session left behind for later passes
    worker.start()
    try:
        if not worker.wait_ready(10):
            raise SystemExit("ingest worker did not connect")
        publisher = Publisher(workdir / f"hub{batch_size}-{run}.json", publisher_job(broker, n, seed, fmt))
        before = cpu_times()
        t0 = publisher.go()

        seen = [-1]

        def processed() -> int:
            p = worker.stats().processed
            if p != seen[0]:  # committed progress: remember when
                seen[0] = p
                last_commit[0] = time.perf_counter()
            return p

        wait_until(lambda: processed() >= n, processed)
        cpu = cpu_us_per_msg(before, cpu_times(), max(1, worker.stats().processed))
        pub = publisher.result()
        worker.wait_idle(quiet_s=0.5, timeout=10)
        stats = worker.stats()
    finally:
        worker.stop()
    counts = store.counts()
    store.close()
    stored = counts.anomalies + counts.stats
    elapsed = last_commit[0] - t0
    log.info("hub %s batch %d: %d of %d stored in %.2f s (%d batches)", fmt, batch_size, stored, pub["published"],
             elapsed, stats.batches)
    return {"stored": stored, "published": pub["published"], "lost": pub["published"] - stored,
            "dead_letters": counts.dead_letters, "duplicates": sum(stats.duplicates.values()), "s": elapsed,
            "msgs_per_s": stats.processed / elapsed, "batches": stats.batches, "cpu_us": cpu,
            "publish_msgs_per_s": pub["published"] / pub["publish_s"]}


def ingest_breakdown(workdir: Path, prefix: str, n: int = 2000) -> dict[str, float]:
    """Per-message costs of the ingest path without MQTT: decode+validate, and the store at batch 1 and 100."""
    from hub.mqtt.decoding import decode_message
    from hub.store.sqlite import SqliteHubStore
    from shared.codec import CONTENT_TYPES
    from shared.topics import Topics

    topics = Topics(prefix)
    out: dict[str, float] = {}
    for fmt in ("msgpack", "json"):
        items = payloads(prefix, [f"bench-{i:03d}" for i in range(10)], n, seed=99, fmt=fmt)
        now = time.time()  # as received at once: decoding refuses messages stamped minutes after it (clock_skew)
        t = time.perf_counter()
        decoded = [decode_message(topics, topic, payload, retained=False, received_at=now,
                                  content_type=CONTENT_TYPES[fmt]) for _, topic, payload in items]
        out["decode_us_per_msg" + ("" if fmt == "json" else f"_{fmt}")] = (time.perf_counter() - t) / n * 1e6
    records = [d.record for d in decoded if d.record is not None]
    for batch in (1, 100):
        store = SqliteHubStore(workdir / f"breakdown-{batch}.db")
        t = time.perf_counter()
        for i in range(0, len(records), batch):
            store.ingest_batch(records[i:i + batch])
        out[f"store_us_per_msg_batch{batch}"] = (time.perf_counter() - t) / len(records) * 1e6
        store.close()
    return out


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest pass, with what any pass lost (throughput noise only ever slows a pass down)."""
    fastest = dict(max(runs, key=lambda r: r["msgs_per_s"]))
    if "lost" in fastest:
        fastest["lost"] = sum(r["lost"] for r in runs)
        fastest["dead_letters"] = sum(r["dead_letters"] for r in runs)
    fastest["all_msgs_per_s"] = [round(r["msgs_per_s"], 1) for r in runs]
    return fastest


# -- drift ------------------------------------------------------------------------------------------------------
def drift_pass(workdir: Path, seed: int) -> dict[str, Any]:
    """`fleet_reports` on synthetic sketches, then `DriftService.run` on a store of 1,000 devices' stats."""
    from hub.app.metrics import HubMetrics
    from hub.app.settings import DriftSettings
    from hub.drift import Sketch, fleet_reports
    from hub.drift.service import DriftService
    from hub.registry.references import ReferenceLibrary
    from hub.store import IngestRecord
    from hub.store.sqlite import SqliteHubStore
    from shared.messages import Status

    manifest = bench_manifest()
    rng = np.random.default_rng(seed)
    devices = [f"bench-{i:04d}" for i in range(DRIFT_DEVICES)]
    sites, kinds = DRIFT_COHORTS
    cohort = {d: f"site-{i % sites}/type-{(i // sites) % kinds}" for i, d in enumerate(devices)}
    shifted = set(devices[:: 20])  # 5% of the fleet drifts on two features
    ref = Sketch.from_reference(manifest.reference)

    sketches = {}
    for d in devices:
        s = draw_stats(rng, manifest, d, 0.0, DRIFT_ROWS * DRIFT_WINDOWS, shift=3 if d in shifted else 0)
        sketches[d] = Sketch.from_stats(s, manifest.reference)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        reports = fleet_reports(ref, sketches, cohort, manifest.feature_names)
        times.append(time.perf_counter() - t)
    fleet_s = statistics.median(times)
    drifting = sum(1 for r in reports if r.verdict == "drift")
    log.info("fleet_reports: %d reports (%d drift) in %.3f s", len(reports), drifting, fleet_s)

    models = workdir / "models"
    (models / VERSION).mkdir(parents=True)
    (models / VERSION / MANIFEST_FILE).write_bytes(dump_manifest(manifest))
    store = SqliteHubStore(workdir / "drift.db")
    now = time.time()
    records: list[Any] = []
    for i, d in enumerate(devices):
        site, kind = cohort[d].split("/")
        records.append(IngestRecord(Status(device_id=d, ts=now - 7200, state="online", site=site, asset_type=kind,
                                           model_version=VERSION), now))
        for k in range(DRIFT_ROWS):
            records.append(IngestRecord(
                draw_stats(rng, manifest, d, now - 60 * (k + 1), DRIFT_WINDOWS, shift=3 if d in shifted else 0), now))
        if i % 250 == 249:
            store.ingest_batch(records)
            records = []
    if records:
        store.ingest_batch(records)
    settings = DriftSettings(window_s=3600)
    t = time.perf_counter()
    rows = store.stats_between(now - settings.window_s, now)
    read_s = time.perf_counter() - t
    service = DriftService(store, ReferenceLibrary(models), settings, metrics=HubMetrics())
    t = time.perf_counter()
    stored = service.run(now)
    service_s = time.perf_counter() - t
    store.close()
    log.info("DriftService.run: %d reports from %d rows in %.3f s (stats read %.3f s)", len(stored), len(rows),
             service_s, read_s)
    return {"fleet_drift_s": fleet_s, "fleet_reports": len(reports), "fleet_drift_verdicts": drifting,
            "drift_service_s": service_s, "drift_service_reports": len(stored), "drift_service_rows": len(rows),
            "drift_read_s": read_s,
            "drift_service_verdicts": sum(1 for r in stored if r["verdict"] == "drift")}


# -- report --------------------------------------------------------------------------------------------------------
def day_of_stats_rows() -> int:
    """Stats rows one device sends per default drift window (HubSettings.drift.window_s / agent stats interval)."""
    from agent.settings import AgentSettings
    from hub.app.settings import DriftSettings

    interval = AgentSettings(device_id="bench", dev_mode=True).stats_interval_s
    return int(DriftSettings().window_s / interval)


def format_summary(raw: dict[str, Any], b100: dict[str, Any], n: int) -> dict[str, Any]:
    """One wire format's passes: rates, the hub's over the raw subscriber's, CPU per message."""
    return {
        "raw_msgs_per_s": round(raw["msgs_per_s"], 1),
        "hub_msgs_per_s": round(b100["msgs_per_s"], 1),
        "ingest_vs_raw": round(b100["msgs_per_s"] / raw["msgs_per_s"], 3),
        "raw_cpu_us_per_msg": round(raw["cpu_us"]["process"], 1),
        "hub_cpu_us_per_msg": round(b100["cpu_us"]["process"], 1),
        "hub_network_thread_us_per_msg": round(b100["cpu_us"]["network"], 1),
        "hub_writer_thread_us_per_msg": round(b100["cpu_us"]["writer"], 1),
        "hub_mean_batch": round(b100["stored"] / max(1, b100["batches"]), 1),
        "lost": b100["lost"],
        "payload_bytes_mean": round(raw["payload_bytes"] / n, 1),
        "raw_msgs_per_s_runs": raw["all_msgs_per_s"],
        "hub_msgs_per_s_runs": b100["all_msgs_per_s"],
    }


def report(n: int, k: int, passes: dict[str, tuple[dict[str, Any], dict[str, Any]]], b1: dict[str, Any],
           drift: dict[str, Any], breakdown: dict[str, float], mosquitto: str) -> tuple[str, dict[str, Any]]:
    """The table and the JSON summary; `passes` maps each wire format to its (raw, batch=100) results, the first
    format's also being the summary's top-level numbers (batch=1 ran in that format)."""
    first = next(iter(passes))
    raw, b100 = passes[first]
    ratio = b100["msgs_per_s"] / raw["msgs_per_s"]
    lost = b1["lost"] + sum(b["lost"] for _, b in passes.values())
    read_us_per_row = drift["drift_read_s"] / drift["drift_service_rows"] * 1e6
    per_day = day_of_stats_rows()
    summary: dict[str, Any] = {
        **format_summary(raw, b100, n),  # the first format's rates, ratio and CPU at the top level
        "hub_msgs_per_s_batch1": round(b1["msgs_per_s"], 1),
        "hub_vs_raw": round(ratio, 3),
        "format": first,
        "hub_batch1_vs_raw": round(b1["msgs_per_s"] / raw["msgs_per_s"], 3),
        "lost": lost,
        "lost_batch1": b1["lost"],
        "lost_batch100": b100["lost"],
        "raw_received": raw["received"],
        "dead_letters": b1["dead_letters"] + sum(b["dead_letters"] for _, b in passes.values()),
        "fleet_drift_s": round(drift["fleet_drift_s"], 4),
        "drift_service_s": round(drift["drift_service_s"], 4),
        "drift_read_s": round(drift["drift_read_s"], 4),
        "drift_read_us_per_row": round(read_us_per_row, 1),
        "drift_service_reports": drift["drift_service_reports"],
        "drift_service_rows": drift["drift_service_rows"],
        "drift_default_window_rows": per_day * DRIFT_DEVICES,
        "publish_msgs_per_s": round(raw["publish_msgs_per_s"], 1),
        "hub_cpu_us_per_msg_batch1": round(b1["cpu_us"]["process"], 1),
        "hub_msgs_per_s_batch1_runs": b1["all_msgs_per_s"],
        "messages": n,
        "devices": k,
        **{key: round(v, 2) for key, v in breakdown.items()},
        "formats": {fmt: format_summary(r, b, n) for fmt, (r, b) in passes.items()},
    }
    met = {"hub_vs_raw": ratio >= TARGETS["hub_vs_raw"], "lost": lost == 0,
           "fleet_drift_s": drift["fleet_drift_s"] < TARGETS["fleet_drift_s"]}
    summary["targets_met"] = met
    verdict = {True: "met", False: "NOT met"}
    d = breakdown
    lines = [
        f"fleetloop hub benchmark: Python {platform.python_version()}, {mosquitto}, {os.cpu_count()} CPUs, loopback",
        f"{n:,} messages (QoS 1; 1 in {STATS_EVERY} Stats with 24x{N_BINS} bins, the rest Anomaly with 24 features; "
        "mean " + ", ".join(f"{fmt} {s['payload_bytes_mean']:.0f} B" for fmt, s in summary["formats"].items())
        + f") from {k} device clients in a separate process",
        "fastest of the interleaved passes per consumer (msgs/s of every pass: " + "; ".join(
            f"{fmt} raw {_runs(r)}, batch=100 {_runs(b)}" for fmt, (r, b) in passes.items())
        + f"; {first} batch=1 {_runs(b1)}); lost counts every pass",
        "",
        f"{'consumer':<33}{'msgs/s':>9}{'vs raw':>8}{'stored':>8}{'lost':>6}{'seconds':>9}"
        f"{'CPU us/msg':>12}{'network':>9}{'writer':>8}{'batch':>7}",
    ]
    for fmt, (r_raw, r_hub) in passes.items():
        lines.append(f"{fmt + ' raw paho subscriber':<33}{r_raw['msgs_per_s']:>9,.0f}{1:>8.2f}{'-':>8}{'-':>6}"
                     f"{r_raw['s']:>9.2f}{r_raw['cpu_us']['process']:>12.1f}{r_raw['cpu_us']['network']:>9.1f}"
                     f"{'-':>8}{'-':>7}")
        hubs = [(f"{fmt} IngestWorker batch=1", b1)] if fmt == first else []
        for name, r in [*hubs, (f"{fmt} IngestWorker batch=100", r_hub)]:
            lines.append(f"{name:<33}{r['msgs_per_s']:>9,.0f}{r['msgs_per_s'] / r_raw['msgs_per_s']:>8.2f}"
                         f"{r['stored']:>8,}{r['lost']:>6}{r['s']:>9.2f}{r['cpu_us']['process']:>12.1f}"
                         f"{r['cpu_us']['network']:>9.1f}{r['cpu_us']['writer']:>8.1f}"
                         f"{r['stored'] / max(1, r['batches']):>7.1f}")
    lines += [
        "",
        f"ingest path without MQTT, one thread: decode+validate {d['decode_us_per_msg']:.1f} us/msg JSON, "
        f"{d['decode_us_per_msg_msgpack']:.1f} MessagePack; store "
        f"{d['store_us_per_msg_batch1']:.1f} us/msg at batch 1, {d['store_us_per_msg_batch100']:.1f} at batch 100",
        "",
        f"fleet drift, {DRIFT_DEVICES:,} devices x 24 features x {N_BINS} bins, "
        f"{DRIFT_COHORTS[0] * DRIFT_COHORTS[1]} cohorts:",
        f"  fleet_reports on sketches   {drift['fleet_drift_s']:.3f} s  ({drift['fleet_reports']:,} reports, "
        f"{drift['fleet_drift_verdicts']} drift)",
        f"  DriftService.run on SQLite  {drift['drift_service_s']:.3f} s  ({drift['drift_service_rows']:,} stats rows, "
        f"{DRIFT_ROWS} per device; reading them {drift['drift_read_s']:.3f} s = {read_us_per_row:.0f} us/row; "
        f"{drift['drift_service_reports']:,} reports stored)",
        f"  at the default settings (24 h window, agent stats every {86400 // per_day} s) a window holds "
        f"{per_day * DRIFT_DEVICES:,} rows: about {per_day * DRIFT_DEVICES * read_us_per_row / 1e6:,.0f} s "
        "just to read them",
        "",
        f"targets: hub >= {TARGETS['hub_vs_raw']}x raw {verdict[met['hub_vs_raw']]} ({first} {ratio:.2f}x"
        + "".join(f", {fmt} {s['ingest_vs_raw']:.2f}x" for fmt, s in summary["formats"].items() if fmt != first)
        + "); 0 lost "
        f"{verdict[met['lost']]} ({lost}); fleet drift < {TARGETS['fleet_drift_s']:g} s "
        f"{verdict[met['fleet_drift_s']]} (fleet_reports {drift['fleet_drift_s']:.3f} s; DriftService.run "
        f"{drift['drift_service_s']:.3f} s)",
        "",
        "msgs/s      messages / (go to the publisher -> last message received, or committed to SQLite); the",
        f"            publisher alone reached {raw['publish_msgs_per_s']:,.0f} msgs/s to the broker's PUBACKs",
        "lost        acknowledged by the broker to a device but not in SQLite once the worker went idle",
        "CPU us/msg  CPU of the consumer process per message (the publisher and mosquitto are other processes);",
        "            network = paho's thread (MQTT parsing, and for the hub also decode+validate and enqueue),",
        "            writer = the ingest writer thread (SQLite transaction, PUBACKs); batch = mean messages per commit",
    ]
    return "\n".join(lines) + "\n", summary


def _runs(result: dict[str, Any]) -> str:
    return " / ".join(f"{r:,.0f}" for r in result["all_msgs_per_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/hub.py", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES, help="messages per pass")
    parser.add_argument("--devices", type=int, default=DEFAULT_DEVICES, help="device clients publishing")
    parser.add_argument("--repeat", type=int, default=2, help="passes per consumer; the fastest is reported and "
                        "messages lost in any pass count")
    parser.add_argument("--seed", type=int, default=7, help="payload seed")
    parser.add_argument("--formats", default="json,msgpack", help="wire formats to measure, comma-separated; the "
                        "first also runs batch=1 and gives the top-level JSON numbers (default json,msgpack)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--publish", type=Path, help=argparse.SUPPRESS)  # internal: the publisher child
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    if args.publish:
        sys.stdout.write(json.dumps(run_publisher(json.loads(args.publish.read_text()))) + "\n")
        return 0
    if min(args.messages, args.devices, args.repeat) < 1:
        parser.error("--messages, --devices and --repeat must be at least 1")
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if not formats or any(f not in ("json", "msgpack") for f in formats):
        parser.error("--formats takes json and/or msgpack")

    from fleetloop.devbroker import DevBroker

    with tempfile.TemporaryDirectory(prefix="fleetloop-bench-hub-") as tmp:
        workdir = Path(tmp)
        devices = [f"bench-{i:03d}" for i in range(args.devices)]
        with DevBroker(workdir / "broker", devices=devices) as broker:
            mosquitto = subprocess.run([broker.mosquitto, "-h"], capture_output=True, text=True)
            version = (mosquitto.stdout + mosquitto.stderr or "mosquitto").splitlines()[0]
            runs: dict[str, list[dict[str, Any]]] = {"b1": []}
            for run in range(args.repeat):  # interleaved, so a busy moment on the machine hits every consumer
                for fmt in formats:
                    runs.setdefault(f"raw-{fmt}", []).append(raw_pass(broker, workdir, args.messages, args.seed, fmt))
                    if fmt == formats[0]:
                        runs["b1"].append(hub_pass(broker, workdir, args.messages, args.seed, 1, run, fmt))
                    runs.setdefault(f"b100-{fmt}", []).append(
                        hub_pass(broker, workdir, args.messages, args.seed, 100, run, fmt))
        passes = {fmt: (best(runs[f"raw-{fmt}"]), best(runs[f"b100-{fmt}"])) for fmt in formats}
        b1 = best(runs["b1"])
        breakdown = ingest_breakdown(workdir, broker.prefix)
        drift = drift_pass(workdir, args.seed)
    table, summary = report(args.messages, args.devices, passes, b1, drift, breakdown, version)
    sys.stdout.write(table)
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
