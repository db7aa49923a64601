"""Console benchmark: how long each console page takes with a big store behind it.

What runs: the real hub app (`create_app` over `build_services`, a real SQLite file) in this process, driven by
Starlette's TestClient signed in as an operator (the same cookie and routes a browser uses). The store gets
``--devices`` devices (10 sites, 3 asset types), ``--predictions`` predictions spread over the last hour
(5 % alarms, so the incident pass makes incidents), through ``HubStore.ingest_batch`` as MQTT ingest stores
them. Each page is fetched ``--repeat`` times after one warm-up; the p50 and p95 of each are reported. Then
the fleet grows to ``--big-devices`` and the fleet page is timed again.

    .venv/bin/python bench/console.py [--devices 1000] [--predictions 100000] [--big-devices 10000] [--json]

With ``--json`` the last line of stdout is one JSON object: ``devices``, ``predictions``, ``pages_p95_ms`` (the
slowest page's p95), ``fleet_page_10k_ms`` (p95 of the fleet page at ``--big-devices``), ``pages`` (p50/p95 per
page) and ``targets_met`` (every page under 200 ms p95, the big fleet page under 500 ms).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

TARGETS = {"pages_p95_ms": 200.0, "fleet_page_10k_ms": 500.0}
TOKEN = "operator-token-bench-0123456789abcdef"
SITES = [f"plant-{i}" for i in range(10)]
ASSETS = ["pump", "fan", "press"]


def _fill(store: Any, devices: list[str], predictions: int, now: float, *, first: int = 0) -> None:
    import numpy as np

    from hub.store.rows import IngestRecord
    from shared.ids import new_id
    from shared.messages import Anomaly, Sample, Status

    rng = np.random.default_rng(7)
    statuses = [Status(device_id=d, ts=now - 3600, state="online", site=SITES[(first + i) % len(SITES)],
                       asset_type=ASSETS[(first + i) % len(ASSETS)], model_version="v1")
                for i, d in enumerate(devices)]
    for i in range(0, len(statuses), 5000):
        store.ingest_batch([IngestRecord(s, now - 3600) for s in statuses[i:i + 5000]])
    batch: list[IngestRecord] = []
    for n in range(predictions):
        device = devices[n % len(devices)]
        ts = now - 3600 + 3600 * n / max(1, predictions)
        alarm = rng.random() < 0.05
        score = float(rng.uniform(0.6, 1.0) if alarm else rng.uniform(0.0, 0.45))
        kind = Anomaly if alarm else Sample
        extra = {} if alarm else {"reason": "random"}
        features = [float(x) for x in rng.normal(0, 1, 36)]
        message = kind(device_id=device, ts=ts, trace_id=new_id(), window_start=ts - 10, window_end=ts, score=score,
                       threshold=0.5, decision=alarm, features=features, model_version="v1", **extra)
        batch.append(IngestRecord(message, ts))
        if len(batch) >= 5000:
            store.ingest_batch(batch)
            batch = []
    if batch:
        store.ingest_batch(batch)


def _time(client: Any, path: str, repeat: int) -> tuple[float, float]:
    response = client.get(path)
    if response.status_code != 200:
        raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:300]}")
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--predictions", type=int, default=100_000)
    parser.add_argument("--big-devices", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="one JSON object as the last line")
    args = parser.parse_args()

    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from hub.api import create_app
    from hub.app.settings import HubSettings
    from hub.app.wiring import build_services
    from hub.registry.signing import SigningKey
    from hub.store.sqlite import SqliteHubStore

    now = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        store = SqliteHubStore(Path(tmp) / "hub.db")
        settings = HubSettings(tokens={TOKEN: "operator"}, mqtt_password=SecretStr("secret"), data_dir=Path(tmp),
                               artifact_base_url="http://127.0.0.1")
        services = build_services(settings, store=store, clock=lambda: now, key=SigningKey.generate(),
                                  client_id="bench-console")
        devices = [f"dev-{i:05d}" for i in range(args.devices)]
        t0 = time.perf_counter()
        _fill(store, devices, args.predictions, now)
        assert services.incidents is not None
        services.incidents.run(now)
        fill_s = time.perf_counter() - t0
        with TestClient(create_app(services), follow_redirects=False) as client:
            page = client.get("/console/sign-in").text
            nonce = re.search(r'name="nonce" value="([^"]+)"', page)
            assert nonce is not None
            client.post("/console/sign-in", data={"token": TOKEN, "who": "bench", "nonce": nonce.group(1)})
            incident = re.search(r'href="/console/incidents/([^"]+)"', client.get("/console/incidents").text)
            paths = {"incidents": "/console/incidents", "queue": "/console/queue", "fleet": "/console/fleet",
                     "fleet, one site": "/console/fleet?site=plant-3", "device": f"/console/devices/{devices[0]}",
                     "rollouts": "/console/rollouts", "models": "/console/models", "drift": "/console/drift"}
            if incident is not None:
                paths["incident"] = f"/console/incidents/{incident.group(1)}"
            pages = {name: _time(client, path, args.repeat) for name, path in paths.items()}
            more = [f"dev-{i:05d}" for i in range(args.devices, args.big_devices)]
            _fill(store, more, 0, now, first=args.devices)
            big = _time(client, "/console/fleet", max(5, args.repeat // 4))
        store.close()

    print(f"{args.devices} devices, {args.predictions} predictions (filled in {fill_s:.1f} s); p50 / p95 ms "
          f"over {args.repeat} requests")
    print(f"{'page':<18} {'p50 ms':>8} {'p95 ms':>8}")
    for name, (p50, p95) in pages.items():
        print(f"{name:<18} {p50:>8.1f} {p95:>8.1f}")
    print(f"{'fleet @' + str(args.big_devices):<18} {big[0]:>8.1f} {big[1]:>8.1f}")
    slowest = max(p95 for _, p95 in pages.values())
    result = {"devices": args.devices, "predictions": args.predictions, "pages_p95_ms": round(slowest, 1),
              "fleet_page_10k_ms": round(big[1], 1), "big_devices": args.big_devices,
              "pages": {n: {"p50_ms": round(a, 1), "p95_ms": round(b, 1)} for n, (a, b) in pages.items()},
              "targets_met": slowest < TARGETS["pages_p95_ms"] and big[1] < TARGETS["fleet_page_10k_ms"]}
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
