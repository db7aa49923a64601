"""`fleetloop hub …`: serve the hub (ingest, drift, API), run an ingest worker, report drift and devices."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.app.settings import HubSettings

if TYPE_CHECKING:
    from hub.app.wiring import Services


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

    retrain = sub.add_parser("retrain", help="retrain now from the latest validated labels, then gate the candidate")
    _settings_args(retrain)
    retrain.add_argument("--reason", required=True, help="why (recorded with the model version)")
    retrain.add_argument("--label-set", help="train on this label set (default: validate labels now)")
    retrain.add_argument("--actor", default="operator", help="who asks (recorded; default 'operator')")

    models = sub.add_parser("models", help="the model registry: versions, status, gate decisions, audit trail")
    _settings_args(models)
    models.add_argument("version", nargs="?", help="show one version with its gate decision and audit trail")
    models.add_argument("--register", type=Path, metavar="DIR",
                        help="register (and sign) a model version directory, e.g. the initial model")
    models.add_argument("--status", default="candidate", help="status to register with (default candidate; "
                        "'active' for the first model of a fleet)")
    models.add_argument("--reason", default="registered by an operator", help="why (recorded)")
    models.add_argument("--json", action="store_true", help="print JSON")

    rollout = sub.add_parser("rollout", help="start, inspect, pause, resume, promote or roll back a rollout")
    _settings_args(rollout)
    rollout.add_argument("action", choices=["start", "list", "show", "pause", "resume", "promote", "rollback",
                                            "abort"])
    rollout.add_argument("target", nargs="?", help="the candidate version (start) or the rollout id")
    rollout.add_argument("--reason", help="why (required for every change; recorded with who and when)")
    rollout.add_argument("--canary", default="0.1", help="share of devices (0.1) or a list of device ids")
    rollout.add_argument("--shadow", action="store_true", help="shadow stage first")
    rollout.add_argument("--actor", default="operator", help="who (recorded; default 'operator')")
    rollout.add_argument("--health-limit", action="append", default=[], metavar="NAME=VALUE",
                         help="override one of the settings' rollout_limits for this rollout (start; repeatable), "
                              "e.g. rollback_anomaly_factor=10")

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


@contextlib.contextmanager
def _services(settings: HubSettings, **options: Any) -> Iterator[Services]:
    """The hub's services for one command (`hub.app.wiring.build_services` options), closed after it."""
    from hub.app.wiring import build_services

    services = build_services(settings, **options)
    try:
        yield services
    finally:
        if services.commands is not None:
            services.commands.stop()
        services.close()


def run(args: argparse.Namespace) -> int:
    handlers = {"serve": _serve, "ingest": _ingest, "drift": _drift, "devices": _devices, "dead-letters": _dead,
                "retrain": _retrain, "models": _models, "rollout": _rollout}
    return handlers[args.command](args)


def _until_signalled() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hub.app.service import HubService

    settings = _settings(args, api_host=args.host, api_port=args.port)
    service = HubService(settings)
    app = service.app()

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
    from hub.app.service import HubService

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
    with _services(_settings(args), registry=False, mqtt=False) as services:
        if args.list:
            rows = services.store.drift_reports(limit=args.limit, scope=args.scope)
            if args.json:
                print(json.dumps([r.report for r in rows], indent=2))
            else:
                for r in rows:
                    print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(r.ts))}  {r.scope:<32} {r.verdict}")
            return 0
        from hub.drift.service import format_table

        assert services.drift is not None
        reports = services.drift.run(time.time())
        if args.scope:
            reports = [r for r in reports if r.get("scope") == args.scope]
        print(json.dumps(reports, indent=2) if args.json else format_table(reports))
        return 0


def _devices(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    with _services(_settings(args), registry=False, mqtt=False) as services:
        devices = services.store.devices()
        if args.json:
            print(json.dumps([asdict(d) for d in devices], indent=2))
        else:
            for d in devices:
                seen = time.strftime("%H:%M:%S", time.gmtime(d.last_seen)) if d.last_seen else "never"
                print(f"{d.device_id:<20} {'online ' if d.online else 'offline'} model {d.model_version or '-':<10} "
                      f"cohort {d.cohort or '-':<24} last seen {seen}")
        return 0


def _dead(args: argparse.Namespace) -> int:
    with _services(_settings(args), registry=False, mqtt=False) as services:
        print(json.dumps(services.store.dead_letter_counts(), indent=2))
        for row in services.store.dead_letters(limit=args.limit):
            print(f"{row.ts:.3f} {row.topic} {row.reason}: {row.detail}")
        return 0


def _retrain(args: argparse.Namespace) -> int:
    """Exit codes: 0 a candidate passed the gate, 3 it did not, 1 the job failed, 2 it was blocked."""
    from dataclasses import asdict

    from hub.errors import RetrainBlockedError, TrainingBusyError

    with _services(_settings(args), mqtt=False) as services:
        assert services.training is not None
        try:
            job = services.training.retrain_now(actor=f"cli:{args.actor}", reason=args.reason, now=time.time(),
                                                label_set_id=args.label_set)
        except (RetrainBlockedError, TrainingBusyError) as exc:
            print(f"fleetloop hub retrain: {exc}")
            return 2
        print(json.dumps(asdict(job), indent=2, default=str))
        if job.status == "failed":
            return 1
        return 0 if job.gate_verdict == "pass" else 3


def _models(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    with _services(_settings(args), mqtt=False, training=False) as services:
        store, registry = services.store, services.registry
        assert registry is not None
        if args.register:
            row = registry.register(args.register, actor=f"cli:{os.environ.get('USER', 'operator')}",
                                    reason=args.reason, status=args.status)
            print(f"registered {row.version} ({row.status}), signed")
            return 0
        if args.version:
            row = registry.get(args.version)
            audit = store.model_audit(version=args.version)
            if args.json:
                print(json.dumps({"version": asdict(row), "audit": [asdict(a) for a in audit]}, indent=2))
            else:
                print(f"{row.version}  {row.status}  parent {row.parent_version or '-'}  by {row.created_by}: "
                      f"{row.reason}")
                if row.gate:
                    print("\n".join(gate_lines(row.gate)))
                for a in audit:
                    print(f"  {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(a.ts))}  {a.actor:<16} {a.action:<12} "
                          f"{a.from_status or '-'} -> {a.to_status or '-'}: {a.reason}")
            return 0
        rows = store.model_versions()
        if args.json:
            print(json.dumps([asdict(r) | {"manifest": None} for r in rows], indent=2))
        for r in [] if args.json else rows:
            print(f"{r.version:<10} {r.status:<12} parent {r.parent_version or '-':<8} {r.reason}")
        return 0


def gate_lines(gate: dict[str, Any]) -> list[str]:
    """A stored gate record in words: the verdict, how its intervals were made, then each check and its numbers."""
    head = f"gate: {gate.get('verdict')}"
    boot = gate.get("bootstrap")
    if boot:  # records made before the block bootstrap have none
        head += (f" (paired block bootstrap, {boot['resamples']} resamples, seed {boot['seed']}: "
                 f"{boot['positive_blocks']} positive and {boot['negative_blocks']} negative of {boot['n_blocks']} "
                 f"blocks; a metric fails beyond its tolerance when the {1 - boot['alpha']:.0%} lower bound is > 0)")
    floor = gate.get("far_floor")
    if floor:  # the incumbent had drifted: false alarms measured from its rate before the drift when higher
        rates = [("overall", floor.get("overall")), *sorted((floor.get("cohorts") or {}).items())]
        head += ("\n  false alarms measured from the incumbent's rate before its drift (where higher): " + ", ".join(
            f"{k} {v:.4f}" for k, v in rates if v is not None))
    return [head] + [f"  {c['name']:<36} {'ok' if c['passed'] else 'FAIL':<4} {c.get('detail', '')}"
                     for c in gate.get("checks", [])]


def _rollout(args: argparse.Namespace) -> int:
    from hub.rollout.settings import override_limits
    from shared.errors import ConfigError

    if args.action in ("list", "show"):
        with _services(_settings(args), mqtt=False, training=False) as services:
            assert services.rollouts is not None
            shown = ([services.rollouts.get(args.target)] if args.action == "show" and args.target
                     else services.rollouts.recent())
            for r in shown:
                print(f"{r.id}  {r.row.candidate} over {r.row.incumbent}  {r.state.status}  stage {r.state.stage}"
                      f"{'  (paused)' if r.state.paused else ''}")
                if args.action == "show":
                    print("  limits  " + "  ".join(f"{k}={v:g}" for k, v in r.plan.limits.to_dict().items()))
                    if r.decision is not None and r.decision.yardstick is not None:
                        print(f"  judged against the {r.decision.yardstick.basis}: {r.decision.yardstick.reason}")
                    for t in r.state.history:
                        print(f"  {t.at:.0f}  {t.actor:<16} {t.action:<10} -> {t.to_stage or '-'}: {t.reason}")
            return 0
    if not args.target or not args.reason:
        what = "candidate" if args.action == "start" else "rollout id"
        raise ConfigError(f"'rollout {args.action}' needs a {what} and --reason")
    overrides = dict(item.partition("=")[::2] for item in args.health_limit)
    if overrides and args.action != "start":
        raise ConfigError("--health-limit applies to 'rollout start' only")
    settings = _settings(args)
    limits = override_limits(settings.rollout_limits.to_limits(), overrides)  # RolloutError before any publish
    with _services(settings, training=False, client_id=f"fleetloop-hub-cli-{os.getpid()}") as services:
        publisher, rollouts = services.commands, services.rollouts
        assert publisher is not None and rollouts is not None
        publisher.start()
        if not publisher.is_connected():
            raise ConfigError(f"cannot reach the broker at {settings.mqtt_host}:{settings.mqtt_port}")
        actor = f"cli:{args.actor}"
        if args.action == "start":
            canary: float | list[str] = (float(args.canary) if args.canary.replace(".", "", 1).isdigit()
                                         else args.canary.split(","))
            rollout = rollouts.start(args.target, actor=actor, reason=args.reason, canary=canary,
                                     shadow=args.shadow, limits=limits)
        else:
            rollout = getattr(rollouts, args.action)(args.target, actor=actor, reason=args.reason)
        publisher.flush(30)
        print(f"{rollout.id}  {rollout.state.status}  stage {rollout.state.stage}")
        return 0
