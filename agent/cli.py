"""`fleetloop agent …`: run the gateway agent, record technician annotations, manage local models."""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

from msgspec.structs import asdict, replace

from agent.settings import AgentSettings, SourceSettings
from infra.cliformat import FORMATS, accept_relative_times, iso, parse_time, table
from infra.config import build
from shared.errors import ConfigError, FleetloopError
from shared.messages import Annotation
from shared.topics import DEFAULT_PREFIX, Topics


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="The gateway agent.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the agent loop until stopped (Ctrl-C stops it cleanly)")
    _settings_args(run)
    run.add_argument("--source", choices=["sim", "cmapss", "csv", "mqtt"], help="sensor source kind")
    run.add_argument("--source-path", type=Path, help="file to replay (cmapss, csv)")
    run.add_argument("--rate", type=float, help="readings per second (0 = as fast as possible)")
    run.add_argument("--seed", type=int, help="simulator seed")
    run.add_argument("--initial-model", type=Path, help="model version dir to install if none is active")
    run.add_argument("--max-windows", type=int, help="stop after this many windows")
    run.add_argument("--duration", type=float, help="stop after this many seconds")

    ann = accept_relative_times(sub.add_parser("annotate", help="record a technician's annotation and queue it for "
                                               "the hub"))
    _local_args(ann)
    target = ann.add_mutually_exclusive_group(required=True)
    target.add_argument("--trace-id", help="the prediction being labelled (it must be in this device's log: "
                        "`fleetloop agent anomalies` lists them)")
    target.add_argument("--range", nargs=2, metavar=("START", "END"),
                        help=f"a time range on this device: {FORMATS}")
    ann.add_argument("--label", required=True, choices=["fault", "no_fault"])
    ann.add_argument("--fault-type", help="e.g. bearing, seal, cavitation")
    ann.add_argument("--technician", required=True, help="technician id")
    ann.add_argument("--confidence", type=float, default=1.0, help="0..1 (default 1)")
    ann.add_argument("--signal", default="confirmed",
                     choices=["confirmed", "correction", "escalation", "rating", "thumbs", "implicit"])
    ann.add_argument("--note", help="free text")

    models = sub.add_parser("models", help="list, install, activate or roll back local model versions")
    _local_args(models)
    models.add_argument("action", choices=["list", "install", "activate", "rollback"])
    models.add_argument("--public-key", help="the hub's model signing key (file or base64); default: "
                                              "model_public_key from --config")
    models.add_argument("--dev", action="store_true", help="allow unsigned models (development only)")
    models.add_argument("target", nargs="?", help="version directory (install) or version (activate)")

    status = sub.add_parser("status", help="summary of the local database: predictions, outbox, model")
    _local_args(status)

    anomalies = accept_relative_times(sub.add_parser(
        "anomalies", help="recent alarms in the local log: time, trace id, score, model",
        description="The predictions this device flagged, newest first, with the trace ids to annotate. Times are "
        "ISO 8601 in UTC."))
    _local_args(anomalies)
    which = anomalies.add_mutually_exclusive_group()
    which.add_argument("--last", type=int, default=20, metavar="N", help="the N newest alarms (default 20)")
    which.add_argument("--range", nargs=2, metavar=("START", "END"), help=f"alarms between two times: {FORMATS}")
    anomalies.add_argument("--json", action="store_true", help="print JSON (times as unix seconds)")

    db = sub.add_parser("db", help="repair the local database: recover a damaged one, or reset it (fresh start)")
    db.add_argument("action", choices=["recover", "reset"],
                    help="recover: copy every readable row into a new database (the damaged file is kept aside); "
                         "reset: move the database aside so the next start is empty (needs --yes)")
    db.add_argument("--config", type=Path, help="settings file to take data_dir from")
    db.add_argument("--data-dir", type=Path)
    db.add_argument("--yes", action="store_true", help="confirm a reset: the active model pointer and unsent "
                                                       "messages stay only in the moved-aside file")

    slim = sub.add_parser("slim", help="remove the parts of the agent's wheels a gateway never runs (onnxruntime's "
                                       "C-API library and model tooling, numpy's tests): ~167 -> ~110 MB on x86-64")
    slim.add_argument("--site", type=Path, help="a site-packages or `pip install --target` directory "
                                                "(default: this interpreter's)")
    slim.add_argument("--dry-run", action="store_true", help="list what would go; remove nothing")
    return parser


def _settings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="settings file (TOML or JSON); env FLEETLOOP_AGENT_* also read")
    p.add_argument("--device-id", help="this gateway's id (also its broker username)")
    p.add_argument("--data-dir", type=Path, help="where the database and model store live")
    p.add_argument("--mqtt-host")
    p.add_argument("--mqtt-port", type=int)
    p.add_argument("--dev", action="store_true", help="dev mode: allow running without an MQTT password")


def _local_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="settings file (TOML or JSON) to take device id and data dir from")
    p.add_argument("--device-id")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--prefix", default=None, help=f"topic prefix (default {DEFAULT_PREFIX})")


def _local(args: argparse.Namespace) -> tuple[str, Path, str]:
    """Device id, data dir and prefix for commands that only touch the local database."""
    data: dict[str, Any] = {}
    if args.config:
        from infra.config import read_settings_file

        data = read_settings_file(args.config)
    device_id = args.device_id or data.get("device_id")
    if not device_id:
        raise ConfigError("which device? pass --device-id or --config")
    data_dir = Path(args.data_dir or data.get("data_dir") or "var/agent")
    return device_id, data_dir, args.prefix or data.get("prefix") or DEFAULT_PREFIX


def _existing_db(data_dir: Path) -> Path:
    """The agent database of a device that has run; ConfigError (one line) rather than creating an empty one."""
    path = data_dir / "agent.db"
    if not data_dir.is_dir():
        raise ConfigError(f"no agent data dir {data_dir}: pass the agent's --config (or --data-dir), the one "
                          "`fleetloop agent run` uses")
    if not path.is_file():
        raise ConfigError(f"no agent database in {data_dir}: pass the agent's --config (or --data-dir), the one "
                          "`fleetloop agent run` uses; a database appears once the agent has run")
    return path


def _times(pair: list[str]) -> tuple[float, float]:
    now = time.time()
    return parse_time(pair[0], now), parse_time(pair[1], now)


def run(args: argparse.Namespace) -> int:
    return {"run": _run, "annotate": _annotate, "models": _models, "status": _status, "db": _db,
            "anomalies": _anomalies, "slim": _slim}[args.command](args)


def _run(args: argparse.Namespace) -> int:
    from agent.app import build_agent

    overrides: dict[str, Any] = {
        "device_id": args.device_id, "data_dir": args.data_dir, "mqtt_host": args.mqtt_host,
        "mqtt_port": args.mqtt_port, "initial_model": args.initial_model, "dev_mode": True if args.dev else None,
    }
    settings = AgentSettings.load(args.config, **overrides)
    cli_source = {"kind": args.source, "path": args.source_path, "rate": args.rate, "seed": args.seed}
    try:
        source = build(SourceSettings, {**asdict(settings.source), **{k: v for k, v in cli_source.items()
                                                                       if v is not None}})
    except ValueError as exc:
        raise ConfigError(f"invalid source settings: {exc}") from None
    settings = replace(settings, source=source)
    agent = build_agent(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    counters = agent.run(stop, max_windows=args.max_windows, duration_s=args.duration)
    print(json.dumps({"device_id": settings.device_id, "readings": counters.readings,
                      "windows": counters.windows, "anomalies": counters.anomalies,
                      "samples": counters.samples, "inference_errors": counters.inference_errors}))
    return 0


def _slim(args: argparse.Namespace) -> int:
    from agent import slim

    if args.site is not None and not args.site.is_dir():
        raise ConfigError(f"--site {args.site} is not a directory")
    removals = slim.plan(args.site)
    if not removals:
        earlier = sum(len(v) for v in slim.removed(args.site).values())
        print("nothing to remove" + (f" (an earlier slim removed {earlier} files)" if earlier else ""))
        return 0
    by_reason: dict[str, list[int]] = {}
    for r in removals:
        by_reason.setdefault(r.reason, []).append(r.size)
    print(table(["MB", "files", "what"], [[f"{sum(v) / 2**20:.1f}", str(len(v)), k] for k, v in by_reason.items()]))
    total = sum(r.size for r in removals) / 2**20
    if args.dry_run:
        print(f"would free {total:.1f} MB (dry run: nothing removed)")
        return 0
    try:
        freed = slim.apply(removals)
    except OSError as exc:
        raise ConfigError(f"cannot remove {exc.filename}: {exc.strerror}; run it as the user that installed the "
                          "agent (e.g. with sudo)") from None
    pins = " ".join(sorted({f"{r.dist}=={r.version}" for r in removals}))
    print(f"freed {freed / 2**20:.1f} MB; to put the files back: pip install --force-reinstall --no-deps {pins}")
    return 0


def _annotate(args: argparse.Namespace) -> int:
    from agent.app import record_annotation
    from agent.db import AgentDB

    device_id, data_dir, prefix = _local(args)
    start, end = _times(args.range) if args.range else (None, None)
    try:
        annotation = Annotation(
            device_id=device_id, ts=time.time(), trace_id=args.trace_id, start_ts=start, end_ts=end,
            label=args.label, fault_type=args.fault_type, technician_id=args.technician,
            confidence=args.confidence, signal=args.signal, note=args.note,
        )
    except ValueError as exc:
        raise ConfigError(f"invalid annotation: {exc}") from None
    path = _existing_db(data_dir)
    db = AgentDB(path)
    try:
        if args.trace_id is not None and db.prediction(args.trace_id) is None:
            raise ConfigError(f"trace {args.trace_id} is not in the log of {device_id} ({path}): check the id "
                              "(`fleetloop agent anomalies` lists recent ones), or annotate a --range")
        record_annotation(db, Topics(prefix), annotation)
    finally:
        db.close()
    print(f"annotation {annotation.annotation_id} queued for the hub")
    return 0


def _models(args: argparse.Namespace) -> int:
    from agent.app import verifier_from_key
    from agent.db import AgentDB
    from agent.models.store import ModelStore
    from infra.config import read_settings_file

    _, data_dir, _ = _local(args)
    path = _existing_db(data_dir)
    key = args.public_key or (read_settings_file(args.config).get("model_public_key") if args.config else None)
    if key:
        verifier = verifier_from_key(str(key))
    elif args.action == "list" or args.dev:
        verifier = None
    else:
        raise ConfigError("models are verified against the hub's signing key: pass --public-key (or a --config "
                          "with model_public_key), or --dev to accept unsigned models")
    db = AgentDB(path)
    store = ModelStore(data_dir / "models", db, verifier)
    if args.action == "list":
        for version in store.versions():
            marks = [m for m, v in (("active", store.active_version), ("previous", store.previous_version))
                     if v == version]
            print(version + (f"  ({', '.join(marks)})" if marks else ""))
    elif args.action == "install":
        if not args.target:
            raise FleetloopError("install needs a model version directory")
        manifest = store.install(Path(args.target))
        print(f"installed {manifest.version}")
    elif args.action == "activate":
        if not args.target:
            raise FleetloopError("activate needs a version")
        print(f"active: {store.activate(args.target).version}")
    else:
        print(f"active: {store.rollback().version}")
    db.close()
    return 0


def _status(args: argparse.Namespace) -> int:
    from agent.db import WIRE_FORMAT_KEY, AgentDB
    from agent.models.store import ModelStore

    _, data_dir, _ = _local(args)
    db = AgentDB(_existing_db(data_dir))
    store = ModelStore(data_dir / "models", db)
    print(json.dumps({
        "predictions": db.prediction_count(), "outbox": db.outbox_size(), "outbox_awaiting_hub": db.awaiting_hub(),
        "next_seq": db.next_seq(), "wire_format": db.get_state(WIRE_FORMAT_KEY),
        "active_model": store.active_version, "previous_model": store.previous_version,
        "db_bytes": db.used_bytes(), "integrity": "ok" if db.integrity_ok() else "FAILED",
    }, indent=2))
    db.close()
    return 0


def _anomalies(args: argparse.Namespace) -> int:
    from agent.db import AgentDB
    from agent.logview import anomalies

    if args.last < 1:
        raise ConfigError("--last needs a positive number")
    _, data_dir, _ = _local(args)
    db = AgentDB(_existing_db(data_dir))
    try:
        if args.range:
            start, end = _times(args.range)
            rows = anomalies(db, limit=10_000, start=start, end=end)
        else:
            rows = anomalies(db, limit=args.last)
    finally:
        db.close()
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no alarms" + (" in that range" if args.range else " in the local log"))
    else:
        print(table(["TIME", "TRACE ID", "SCORE", "MODEL", "UNIT"],
                    [[iso(r["ts"]), r["trace_id"], f"{r['score']:.3f}" if r["score"] is not None else None,
                      r["model_version"], r["unit"]] for r in rows]))
    return 0


def _db(args: argparse.Namespace) -> int:
    """Stop the agent first: both actions replace the database file."""
    from agent.dbrecover import recover, reset

    data_dir = args.data_dir
    if data_dir is None and args.config:
        from infra.config import read_settings_file

        data_dir = read_settings_file(args.config).get("data_dir")
    path = Path(data_dir or "var/agent") / "agent.db"
    if args.action == "recover":
        print(json.dumps(recover(path), indent=2))
        return 0
    if not args.yes:
        raise ConfigError(f"reset moves {path} aside and the agent starts with an empty database (it forgets the "
                          "active model and unsent messages); run again with --yes to confirm")
    moved = reset(path)
    print(f"moved {path} to {moved}; the next start creates a fresh database" if moved else f"no database at {path}")
    return 0
