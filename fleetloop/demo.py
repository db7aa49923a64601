"""`fleetloop demo`: the local fleet in one command: a dev broker, the initial model and simulated agents.

With no arguments: a `DevBroker` on a free port in a temporary work dir, the initial model built there,
six agents (one process each) for 60 s with progress lines, then a summary table per device.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from fleetloop.devbroker import HUB_USER, DevBroker
from fleetloop.fleet import (
    DeviceSpec,
    Fleet,
    FleetMonitor,
    FleetReport,
    FleetSettings,
    plan_fleet,
    sigterm_as_interrupt,
    supervise,
)
from shared.errors import ConfigError

log = logging.getLogger(__name__)

MODEL_VERSION = "v1"
MODEL_SEED = 7  # the initial recipe's seed: the demo's --seed changes the machines, not the model
# name -> (devices, duration s, readings/s per device, stats interval s, progress every s)
PROFILES = {"normal": (6, 60.0, 20.0, 2.0, 5.0), "fast": (3, 12.0, 200.0, 1.0, 2.0)}
FAST_MODEL = (30, 2500)  # machines, steps: about half the recipe's build time, still a good model


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Run the local fleet demo: a dev mosquitto, the initial model and simulated "
        "agents (one process each), with live progress and a summary per device. Ctrl-C stops it cleanly.")
    parser.add_argument("--devices", type=int, metavar="N", help="number of simulated agents (default 6; --fast 3)")
    parser.add_argument("--duration", type=float, metavar="S", help="seconds to run the fleet (default 60; --fast 12)")
    parser.add_argument("--rate", type=float, metavar="R",
                        help="readings per second per device; a prediction every 5 readings (default 20; --fast 200)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulated machines (default 1)")
    parser.add_argument("--workdir", type=Path, metavar="DIR", help="keep the broker, model and agent data here and "
                        "reuse them next time (default: a temporary directory, removed afterwards)")
    parser.add_argument("--port", type=int, help="broker port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--fast", action="store_true",
                        help="a short run for tests: 3 devices, 12 s, 200 readings/s, a smaller initial model")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line, last")
    return parser


def run(args: argparse.Namespace) -> int:
    devices, duration, rate, stats_interval, every = PROFILES["fast" if args.fast else "normal"]
    devices = args.devices if args.devices is not None else devices
    duration = args.duration if args.duration is not None else duration
    rate = args.rate if args.rate is not None else rate
    if devices < 1 or duration <= 0 or rate <= 0:
        raise ConfigError("--devices, --duration and --rate must be positive")
    specs = plan_fleet(devices, args.seed)
    workdir = args.workdir.resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="fleetloop-demo-"))
    started = time.monotonic()
    try:
        with sigterm_as_interrupt():
            broker = DevBroker(workdir / "broker", port=args.port, devices=[s.device_id for s in specs])
            broker.start()
            try:
                log.info("dev broker on %s (work dir %s)", broker.url, workdir)
                model_dir = ensure_model(workdir / "models" / MODEL_VERSION, fast=args.fast)
                public_key = sign_for_demo(model_dir, workdir)
                report = _run_fleet(broker, specs, model_dir, public_key, workdir / "agents", rate=rate,
                                    duration=duration,
                                    stats_interval=stats_interval, every=every)
            finally:
                broker.stop()
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    log.info("demo finished in %.1f s (%s)", time.monotonic() - started, report.stopped_by)
    sys.stdout.write(report.table() + "\n")
    if args.json:
        summary = {"demo_s": round(time.monotonic() - started, 2), "workdir": str(workdir), **report.to_json()}
        sys.stdout.write(json.dumps(summary) + "\n")
    if not report.ok:
        log.error("some agents did not exit cleanly (exit codes %s); see agents/*/agent.log in the work dir "
                  "(pass --workdir to keep it)", report.exit_codes)
        return 1
    return 130 if report.stopped_by == "interrupted" else 0


def ensure_model(out: Path, *, fast: bool = False) -> Path:
    """The initial model version in `out`, built by the initial recipe if it is not there yet."""
    if (out / "manifest.json").is_file():
        log.info("using the model in %s", out)
        return out
    from models.initial import build_initial  # hub extra: scikit-learn, skl2onnx

    log.info("building the initial model %s from the simulator (a few seconds; kept in the work dir)", out.name)
    built = time.monotonic()
    if fast:
        build_initial(out, seed=MODEL_SEED, version=out.name, n_machines=FAST_MODEL[0], steps=FAST_MODEL[1])
    else:
        build_initial(out, seed=MODEL_SEED, version=out.name)
    log.info("model %s built in %.1f s", out.name, time.monotonic() - built)
    return out


def sign_for_demo(model_dir: Path, workdir: Path) -> str:
    """Sign the demo's model with a dev key kept in the work dir; the agents pin its public key."""
    from hub.signing import SigningKey, default_key_path

    key = SigningKey.load(default_key_path(workdir), dev_mode=True)
    key.sign_version(model_dir)
    return key.public_key_text()


def _run_fleet(broker: DevBroker, specs: list[DeviceSpec], model_dir: Path, public_key: str, data_dir: Path, *,
               rate: float,
               duration: float, stats_interval: float, every: float) -> FleetReport:
    settings = FleetSettings(
        host=broker.host, port=broker.port, passwords=broker.credentials, model_dir=model_dir, data_dir=data_dir,
        prefix=broker.prefix, rate=rate, stats_interval_s=stats_interval, max_duration_s=duration + 60.0,
        model_public_key=public_key,
    )
    fleet = Fleet(specs, settings)
    monitor = FleetMonitor(broker.host, broker.port, broker.password(HUB_USER), [s.device_id for s in specs],
                           prefix=broker.prefix, username=HUB_USER)
    monitor.start()
    try:
        log.info("starting %d agents (%s) at %g readings/s for %g s", len(specs),
                 ", ".join(sorted({s.cohort for s in specs})), rate, duration)
        return supervise(fleet, monitor, duration_s=duration, progress_every_s=every)
    finally:
        monitor.stop()
