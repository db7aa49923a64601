"""`fleetloop hub …`: serve the hub (ingest, drift, API), run an ingest worker, report drift and devices."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hub.settings import HubSettings


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="The hub: ingest, API, drift, labels.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run ingest, the drift scheduler and the HTTP API in one process")
    _settings_args(serve)
    serve.add_argument("--host", help="API listen address (default from settings: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="API port (default from settings: 8000)")

    ingest = sub.add_parser("ingest", help="run one ingest worker (start several: they share the load)")
    _settings_args(ingest)

    drift = sub.add_parser("drift", help="compute fleet, cohort and device drift now, or list stored reports")
    _settings_args(drift)
    drift.add_argument("--list", action="store_true", help="list the latest stored reports instead of computing")
    drift.add_argument("--scope", help="only this scope (e.g. fleet@v1)")
    drift.add_argument("--limit", type=int, default=20, help="reports to list (default 20)")
    drift.add_argument("--json", action="store_true", help="print JSON")

    devices = sub.add_parser("devices", help="the device registry: presence, model version, cohort")
    _settings_args(devices)
    devices.add_argument("--json", action="store_true", help="print JSON")

    dead = sub.add_parser("dead-letters", help="refused messages by reason, and the latest ones")
    _settings_args(dead)
    dead.add_argument("--limit", type=int, default=20)
    return parser


def _settings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="settings file (TOML or JSON); env FLEETLOOP_HUB_* also read")
    p.add_argument("--data-dir", type=Path, help="where the hub database and model versions live")
    p.add_argument("--mqtt-host")
    p.add_argument("--mqtt-port", type=int)
    p.add_argument("--dev", action="store_true", help="dev mode: allow running without an MQTT password or tokens")


def _settings(args: argparse.Namespace, **extra: Any) -> HubSettings:
    return HubSettings.load(
        args.config, data_dir=args.data_dir, mqtt_host=args.mqtt_host, mqtt_port=args.mqtt_port,
        dev_mode=True if args.dev else None, **extra,
    )


def run(args: argparse.Namespace) -> int:
    handlers = {"serve": _serve, "ingest": _ingest, "drift": _drift, "devices": _devices, "dead-letters": _dead}
    return handlers[args.command](args)


def _until_signalled() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hub.api.app import create_app
    from hub.service import HubService

    settings = _settings(args, api_host=args.host, api_port=args.port)
    service = HubService(settings)
    app = create_app(settings, service.store, metrics=service.metrics, labels=settings.labels)

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises SIGTERM after its shutdown, which would kill us before the hub stops cleanly
            yield

    server = Server(uvicorn.Config(app, host=settings.api_host, port=settings.api_port, log_level="info"))

    def shutdown(signum: int, frame: object) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    service.start()
    try:
        server.run()
    finally:
        service.stop()
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from hub.service import HubService

    service = HubService(_settings(args))
    service.jobs.clear()  # a plain worker: drift runs in `hub serve`
    stop = _until_signalled()
    service.start()
    while not stop.wait(10):
        s = service.worker.stats()
        print(json.dumps({"stored": s.stored, "duplicates": s.duplicates, "dead_letters": s.dead_letters,
                          "pending": s.pending}), flush=True)
    service.stop()
    return 0


def _drift(args: argparse.Namespace) -> int:
    from hub.store import open_store

    settings = _settings(args)
    store = open_store(settings.store)
    try:
        if args.list:
            rows = store.drift_reports(limit=args.limit, scope=args.scope)
            if args.json:
                print(json.dumps([r.report for r in rows], indent=2))
            else:
                for r in rows:
                    print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(r.ts))}  {r.scope:<32} {r.verdict}")
            return 0
        from hub.drift_service import DriftService, format_table
        from hub.references import ReferenceLibrary

        reports = DriftService(store, ReferenceLibrary(settings.data_dir / "models"), settings.drift).run(time.time())
        if args.scope:
            reports = [r for r in reports if r.get("scope") == args.scope]
        print(json.dumps(reports, indent=2) if args.json else format_table(reports))
        return 0
    finally:
        store.close()


def _devices(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from hub.store import open_store

    store = open_store(_settings(args).store)
    try:
        devices = store.devices()
        if args.json:
            print(json.dumps([asdict(d) for d in devices], indent=2))
        else:
            for d in devices:
                seen = time.strftime("%H:%M:%S", time.gmtime(d.last_seen)) if d.last_seen else "never"
                print(f"{d.device_id:<20} {'online ' if d.online else 'offline'} model {d.model_version or '-':<10} "
                      f"cohort {d.cohort or '-':<24} last seen {seen}")
        return 0
    finally:
        store.close()


def _dead(args: argparse.Namespace) -> int:
    from hub.store import open_store

    store = open_store(_settings(args).store)
    try:
        print(json.dumps(store.dead_letter_counts(), indent=2))
        for row in store.dead_letters(limit=args.limit):
            print(f"{row.ts:.3f} {row.topic} {row.reason}: {row.detail}")
        return 0
    finally:
        store.close()
