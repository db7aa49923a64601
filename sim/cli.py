"""`fleetloop sim …`: a simulated fleet of agents against a running broker, and simulated readings as CSV.

`sim readings` stays numpy-only (it runs on a gateway with the agent extra); `sim fleet` imports the
fleet runner only when called.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from shared.errors import ConfigError
from sim.drift import Drift
from sim.machine import SENSORS, MachineConfig, SimulatedMachine

log = logging.getLogger(__name__)

CHUNK = 10_000  # readings simulated per block by `sim readings`


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Simulated machines: a fleet of agents, or readings.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fleet = sub.add_parser(
        "fleet", help="run N simulated agents (one process each) against an existing broker",
        description="Run agents dev-0 … dev-{N-1}, each simulating a machine of the default cohorts, against "
        "a running broker (e.g. `fleetloop broker run`), and print a one-line summary of what the hub side "
        "sees every few seconds. Ctrl-C stops every agent cleanly.",
    )
    fleet.add_argument("--devices", type=int, default=3, metavar="N", help="number of agents (default 3)")
    fleet.add_argument("--credentials", type=Path, required=True, metavar="FILE",
                       help="the dev broker's credentials.json (hub and device passwords, host, port, prefix)")
    fleet.add_argument("--host", help="broker host (default: from the credentials file)")
    fleet.add_argument("--port", type=int, help="broker port (default: from the credentials file)")
    fleet.add_argument("--model", type=Path, required=True, metavar="DIR",
                       help="model version directory each agent installs if it has none active")
    fleet.add_argument("--model-public-key", metavar="KEY",
                       help="the hub's model signing public key (file or base64) the agents pin; without it the "
                            "agents run in dev mode and serve unsigned models")
    fleet.add_argument("--rate", type=float, default=10.0, help="readings per second per device (default 10)")
    fleet.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    fleet.add_argument("--data-dir", type=Path, default=Path("var/sim-fleet"), metavar="DIR",
                       help="one directory per agent: settings, database, models, log (default var/sim-fleet)")
    fleet.add_argument("--seed", type=int, default=1, help="seed the device seeds derive from (default 1)")
    fleet.add_argument("--stats-interval", type=float, default=5.0, metavar="S",
                       help="seconds between the agents' stats reports (default 5)")
    fleet.add_argument("--every", type=float, default=5.0, metavar="S", help="seconds between summaries (default 5)")
    fleet.add_argument("--json", action="store_true", help="print the final summary as one JSON line, last")

    readings = sub.add_parser(
        "readings", help="print one simulated machine's readings as CSV (for the CSV replay source)",
        description="Print the readings of one simulated machine as CSV on stdout: columns t (the step), "
        f"{', '.join(SENSORS)} and rul (ground truth: steps to failure, which replay sources ignore). "
        "The same seed and options give the same bytes.",
    )
    readings.add_argument("--machine-id", default="sim-000", help="machine id (default sim-000)")
    readings.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")
    readings.add_argument("--steps", type=int, required=True, metavar="K", help="number of readings")
    readings.add_argument("--config", metavar="JSON",
                          help='machine settings, e.g. \'{"asset_type": "fan", "life_steps": [150, 300]}\'')
    readings.add_argument("--drift", metavar="JSON",
                          help='drift(s) to inject: an object or a list, e.g. \'{"kind": "sensor_offset", '
                          '"start_t": 500, "sensor": "temperature", "offset": 4}\'')
    return parser


def run(args: argparse.Namespace) -> int:
    return {"fleet": _fleet, "readings": _readings}[args.command](args)


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{what} is not valid JSON: {exc}") from None


def _readings(args: argparse.Namespace) -> int:
    if args.steps < 0:
        raise ConfigError("--steps must be >= 0")
    try:
        config = MachineConfig(**_json_arg(args.config, "--config")) if args.config else MachineConfig()
        raw = _json_arg(args.drift, "--drift") if args.drift else []
        drifts = TypeAdapter(list[Drift]).validate_python(raw if isinstance(raw, list) else [raw])
    except (ValidationError, TypeError) as exc:
        raise ConfigError(f"invalid machine or drift settings: {exc}") from None
    machine = SimulatedMachine(args.machine_id, args.seed, config)
    for drift in drifts:
        machine.inject(drift)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    try:
        writer.writerow(["t", *SENSORS, "rul"])
        left = args.steps
        while left > 0:
            trace = machine.run(min(CHUNK, left))
            left -= len(trace)
            writer.writerows(
                [str(int(t)), *(f"{v:.6f}" for v in values), str(int(rul))]
                for t, values, rul in zip(trace.t, trace.values, trace.rul, strict=True)
            )
        sys.stdout.flush()
    except BrokenPipeError:  # `… | head` closed the pipe: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _fleet(args: argparse.Namespace) -> int:
    from fleetloop.fleet import Fleet, FleetMonitor, FleetSettings, plan_fleet, sigterm_as_interrupt, supervise

    creds = _credentials(args.credentials)
    host, port = args.host or str(creds["host"]), args.port or int(creds["port"])
    prefix, hub_user = str(creds.get("prefix", "fleetloop")), str(creds.get("hub_user", "hub"))
    users: dict[str, str] = creds["users"]
    if args.rate <= 0:
        raise ConfigError("--rate must be > 0 readings per second")
    specs = plan_fleet(args.devices, args.seed)
    missing = [s.device_id for s in specs if s.device_id not in users]
    if missing:
        raise ConfigError(f"{args.credentials} has no user for {', '.join(missing)}: start the broker with "
                          f"those devices (fleetloop broker run --devices …)")
    if hub_user not in users:
        raise ConfigError(f"{args.credentials} has no password for the hub user {hub_user!r}")
    settings = FleetSettings(
        host=host, port=port, passwords=users, model_dir=args.model, data_dir=args.data_dir, prefix=prefix,
        rate=args.rate, stats_interval_s=args.stats_interval,
        max_duration_s=args.duration + 60.0 if args.duration else None,
        model_public_key=args.model_public_key,
        agent_overrides={} if args.model_public_key else {"dev_mode": True},
    )
    fleet = Fleet(specs, settings)
    monitor = FleetMonitor(host, port, users[hub_user], [s.device_id for s in specs], prefix=prefix,
                           username=hub_user)
    with sigterm_as_interrupt():
        monitor.start()
        try:
            log.info("%d agents against %s:%d at %g readings/s each; data in %s", len(specs), host, port,
                     args.rate, args.data_dir)
            report = supervise(fleet, monitor, duration_s=args.duration, progress_every_s=args.every)
        finally:
            monitor.stop()
    sys.stdout.write(report.table() + "\n")
    if args.json:
        sys.stdout.write(json.dumps(report.to_json()) + "\n")
    if not report.ok:
        log.error("some agents did not exit cleanly: %s", report.exit_codes)
        return 1
    return 130 if report.stopped_by == "interrupted" else 0


def _credentials(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        if not isinstance(data.get("users"), dict) or "host" not in data or "port" not in data:
            raise ValueError("needs host, port and users")
    except OSError as exc:
        raise ConfigError(f"cannot read credentials file {path}: {exc.strerror}") from None
    except (ValueError, AttributeError) as exc:
        raise ConfigError(f"{path} is not a dev-broker credentials file: {exc}") from None
    return dict(data)
