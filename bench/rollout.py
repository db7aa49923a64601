"""Rollout benchmark: 100 real agents on loopback take a new model; how long until all report it, windows lost.

What runs: a dev mosquitto, the hub side in this process (IngestWorker → SQLite store, a signed registry,
`CommandPublisher`, `RolloutService` ticking every 0.2 s) and N agents spread over a few worker processes
(``bench/rollout.py --worker SPEC``), each hosting its share of agents in threads. An agent is the real one
(`build_agent`: SQLite log, outbox, MQTT link, model manager) fed by a paced `ArraySource`. 100 processes
would not fit 2 cores (100 interpreters and onnxruntime sessions); one process would serialise 100 agents on
one GIL: 4 workers x 25 agents is the middle. Each agent's onnxruntime session uses one thread.

Two promotions, one after the other:

1. **assign**: v2 assigned fleet-wide at once (one retained `Assign` per device, file:// from the registry).
   Time = from the first publish until the hub has stored a ``swapped`` event for v2 from every device.
2. **rollout**: v3 through `RolloutService` (10 % canary, then the fleet) with minimal policies (no minimum
   duration, 1 window, the health comparison loosened). Time = from ``start`` to ``completed``.

Dropped windows: after the run each agent's readings give the windows it should have scored
(``(readings - size) // step + 1``); compared with the windows it scored (its counter and its SQLite log).
A swap keeps the windower, so the target is 0.

    .venv/bin/python bench/rollout.py [--devices 100] [--workers 4] [--rate 20] [--json]

With ``--json`` the last line of stdout is one JSON object: ``devices``, ``rollout_s`` (the fleet-wide assign),
``dropped_windows``, and ``staged_rollout_s``, ``windows_expected``, ``windows_scored`` …
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as a script, this file's directory comes first on sys.path and would shadow the `agent` package.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

log = logging.getLogger("bench.rollout")

TARGETS = {"rollout_s": 10.0, "dropped_windows": 0}
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# -- worker: many agents in one process -------------------------------------------------------------------
def run_worker(spec_path: Path) -> int:
    import numpy as np

    from agent.app import build_agent
    from agent.settings import AgentSettings
    from agent.sources.memory import ArraySource

    spec = json.loads(spec_path.read_text())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    agents, threads = [], []
    for i, device in enumerate(spec["devices"]):
        settings = AgentSettings(
            device_id=device, dev_mode=True, data_dir=Path(spec["data_dir"]) / device, mqtt_host=spec["host"],
            mqtt_port=spec["port"], mqtt_password=spec["passwords"][device], initial_model=spec["model_dir"],
            model_public_key=spec["public_key"], stats_interval_s=1.0, sample_rate=0.01, health_windows=10,
            health_latency_ms=1000.0,  # 25 agents share one GIL: a window's latency includes the others' turns
        )
        n = int(spec["rate"] * spec["max_s"])
        values = np.random.default_rng(spec["seed"] + i).normal(50.0, 5.0, size=(n, len(spec["sensors"])))
        source = ArraySource(spec["sensors"], values, rate=spec["rate"])
        agent = build_agent(settings, source)
        thread = threading.Thread(target=agent.run, kwargs={"stop": stop, "drain_s": 3.0}, name=device, daemon=True)
        thread.start()
        agents.append(agent)
        threads.append(thread)
    stop.wait(spec["max_s"])
    stop.set()
    for thread in threads:
        thread.join(30)
    results = []
    for agent in agents:
        conn = sqlite3.connect(f"file:{agent.settings.db_path}?mode=ro", uri=True)
        logged = conn.execute("SELECT count(*) FROM predictions").fetchone()[0]
        conn.close()
        c = agent.counters
        results.append({"device": agent.device_id, "readings": c.readings, "windows": c.windows, "logged": logged,
                        "inference_errors": c.inference_errors, "window_resets": c.extra.get("window_resets", 0),
                        "serving": agent.model.version})
    Path(spec["result"]).write_text(json.dumps(results))
    return 0


# -- parent: broker, hub, workers, the two promotions ----------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4, help="processes hosting the agents")
    parser.add_argument("--rate", type=float, default=20.0, help="readings per second per agent")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.worker else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    if args.worker:
        return run_worker(args.worker)
    with tempfile.TemporaryDirectory(prefix="fleetloop-bench-rollout-") as tmp:
        result = bench(Path(tmp), args)
    print_table(result)
    if args.json:
        print(json.dumps(result))
    return 0


def bench(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    from pydantic import SecretStr

    from fleetloop.devbroker import HUB_USER, DevBroker
    from hub.app.service import Periodic
    from hub.app.settings import HubSettings
    from hub.mqtt.ingest import IngestWorker
    from hub.mqtt.publisher import CommandPublisher
    from hub.registry.service import Registry
    from hub.registry.signing import SigningKey
    from hub.rollout import HealthLimits, StagePolicy
    from hub.rollout.service import RolloutService
    from hub.store.sqlite import SqliteHubStore
    from models.initial import build_initial

    started = time.monotonic()
    devices = [f"bench-{i:03d}" for i in range(args.devices)]
    log.info("building the model (recipe, small fleet)")
    manifest = build_initial(tmp / "src" / "v1", seed=7, n_machines=20, steps=2000)
    for version in ("v2", "v3"):
        _variant(tmp / "src" / "v1", tmp / "src" / version, version)
    broker = DevBroker(tmp / "broker", devices=devices)
    broker.start()
    store = SqliteHubStore(tmp / "hub.db")
    key = SigningKey.generate()
    registry = Registry(store, tmp / "registry", key)
    registry.register(tmp / "src" / "v1", actor="bench", reason="bench", status="active")
    for version in ("v2", "v3"):
        registry.register(tmp / "src" / version, actor="bench", reason="bench")
        registry.skip_gate(version, actor="bench", reason="bench")
    password = broker.password(HUB_USER)
    ingest = IngestWorker(host=broker.host, port=broker.port, username=HUB_USER, password=password, store=store,
                          share_group="bench", client_id="bench-ingest", batch_size=1000)
    ingest.start()
    settings = HubSettings(dev_mode=True, mqtt_host=broker.host, mqtt_port=broker.port, mqtt_username=HUB_USER,
                           mqtt_password=SecretStr(password))
    publisher = CommandPublisher(settings, client_id="bench-rollouts")
    publisher.start()
    minimal = StagePolicy(min_duration_s=0, min_windows=1, timeout_s=120)
    service = RolloutService(
        store, registry, publisher, artifact_url=lambda v: registry.path(v).as_uri(),
        policies={"canary": minimal, "fleet": minimal},
        limits=HealthLimits(latency_p99_ms=1000, min_rate_windows=1, anomaly_rate_factor=1000,
                            rollback_anomaly_factor=1000, max_score_psi=1000),
    )
    ticker = Periodic("rollouts", 0.2, service.tick)
    ticking = False
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        chunks = [devices[i :: args.workers] for i in range(args.workers)]
        for n, chunk in enumerate(c for c in chunks if c):
            spec = {"devices": chunk, "passwords": {d: broker.password(d) for d in chunk}, "host": broker.host,
                    "port": broker.port, "model_dir": str(registry.path("v1")), "public_key": key.public_key_text(),
                    "sensors": manifest.window.sensors, "rate": args.rate, "max_s": 75.0, "seed": 1000 * n,
                    "data_dir": str(tmp / "agents"), "result": str(tmp / f"result-{n}.json")}
            spec_path = tmp / f"spec-{n}.json"
            spec_path.write_text(json.dumps(spec))
            out = (tmp / f"worker-{n}.log").open("w")
            with out:
                proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path)],
                                        env={**os.environ, **WORKER_ENV}, stdout=out, stderr=subprocess.STDOUT)
            procs.append((proc, tmp / f"result-{n}.json"))
        t = time.monotonic()
        _wait(lambda: sum(d.model_version == "v1" for d in store.devices()) == len(devices), 60, "agents online")
        startup_s = time.monotonic() - t
        log.info("%d agents online serving v1 after %.1f s", len(devices), startup_s)
        ticker.start()
        ticking = True
        time.sleep(2.0)  # a little steady state before the first swap

        # 1. fleet-wide assign of v2
        t0 = time.time()
        assign = registry.assignment("v2", mode="active", url=registry.path("v2").as_uri())
        for device in devices:  # signed for each device, as the rollout service does
            publisher.assign(device, registry.signed_assignment(assign, device_id=device, ttl_s=3600.0))
        swapped = _wait_reported(store, devices, "v2", t0)
        assign_s = max(swapped.values()) - t0
        log.info("fleet-wide assign: all %d report v2 after %.2f s", len(devices), assign_s)
        registry.transition("v2", "active", actor="bench", action="bench_promote", reason="fleet-wide assign")
        registry.transition("v1", "retired", actor="bench", action="bench_promote", reason="replaced by v2")
        time.sleep(2.0)

        # 2. staged rollout of v3: 10 % canary, then the fleet
        t1 = time.time()
        rollout = service.start("v3", actor="bench", reason="bench", canary=0.1)
        _wait(lambda: service.get(rollout.id).state.status != "running", 120, "the staged rollout")
        final = service.get(rollout.id)
        staged_s = final.state.updated_at - t1
        if final.state.status != "completed":
            raise RuntimeError(f"the staged rollout ended {final.state.status}: {final.state.history[-1].reason}")
        canary_s = final.state.history[1].at - t1
        reported = _wait_reported(store, devices, "v3", t1)
        staged_all_s = max(reported.values()) - t1
        log.info("staged rollout completed after %.2f s (canary %.2f s)", staged_s, canary_s)
        time.sleep(1.0)
    finally:
        if ticking:
            ticker.stop()
        for proc, _ in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, _ in procs:
            proc.wait(60)
        publisher.stop()
        ingest.stop()
        store.close()
        broker.stop()
    agents = [a for _, path in procs for a in json.loads(path.read_text())]
    size, step = manifest.window.size, manifest.window.step
    expected = sum((a["readings"] - size) // step + 1 for a in agents if a["readings"] >= size)
    scored = sum(a["windows"] for a in agents)
    logged = sum(a["logged"] for a in agents)
    return {
        "devices": len(devices),
        "rollout_s": round(assign_s, 3),
        "dropped_windows": expected - scored,
        "staged_rollout_s": round(staged_s, 3),
        "staged_canary_s": round(canary_s, 3),
        "staged_all_reported_s": round(staged_all_s, 3),
        "assign_p50_s": round(sorted(swapped.values())[len(swapped) // 2] - t0, 3),
        "windows_expected": expected,
        "windows_scored": scored,
        "windows_logged": logged,
        "inference_errors": sum(a["inference_errors"] for a in agents),
        "window_resets": sum(a["window_resets"] for a in agents),
        "serving_at_end": sorted({a["serving"] for a in agents}),
        "workers": len(procs),
        "rate_per_agent": args.rate,
        "startup_s": round(startup_s, 2),
        "total_s": round(time.monotonic() - started, 1),
    }


def _variant(src: Path, dst: Path, version: str) -> None:
    import shutil

    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["version"] = version
    (dst / "manifest.json").write_text(json.dumps(manifest))


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _wait_reported(store: Any, devices: list[str], version: str, since: float) -> dict[str, float]:
    """Hub receive time of each device's first ``swapped`` event for `version` (waits for all of them)."""
    seen: dict[str, float] = {}

    def done() -> bool:
        for e in store.model_events(since=since - 5):
            if e.event == "swapped" and e.version == version and e.device_id not in seen:
                seen[e.device_id] = e.received_at
        return len(seen) >= len(devices)

    _wait(done, 60, f"every device to report {version}")
    return seen


def print_table(r: dict[str, Any]) -> None:
    rows = [
        ("devices (agents)", f"{r['devices']} in {r['workers']} processes, {r['rate_per_agent']:g} readings/s each",
         ""),
        ("fleet-wide assign → all report v2", f"{r['rollout_s']:.2f} s (p50 {r['assign_p50_s']:.2f} s)",
         f"< {TARGETS['rollout_s']:g} s"),
        ("staged rollout v3 (10 % canary → fleet)",
         f"{r['staged_rollout_s']:.2f} s (canary {r['staged_canary_s']:.2f} s)", ""),
        ("  all report v3", f"{r['staged_all_reported_s']:.2f} s", ""),
        ("windows expected / scored / logged",
         f"{r['windows_expected']} / {r['windows_scored']} / {r['windows_logged']}", ""),
        ("dropped windows", f"{r['dropped_windows']}", f"{TARGETS['dropped_windows']}"),
        ("inference errors, window resets", f"{r['inference_errors']}, {r['window_resets']}", ""),
        ("serving at the end", ", ".join(r["serving_at_end"]), ""),
        ("agents start-up, whole run", f"{r['startup_s']:.1f} s, {r['total_s']:.1f} s", ""),
    ]
    width = max(len(name) for name, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    print(f"{'measure':<{width}}  {'value':<{value_width}}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<{value_width}}  {target}")


if __name__ == "__main__":
    sys.exit(main())
