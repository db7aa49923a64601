"""`fleetloop sim …`: a simulated fleet of agents against a running broker, simulated readings as CSV, and
simulated plant sensors publishing over MQTT.

`sim readings` stays numpy-only (it runs on a gateway with the agent extra); `sim fleet` and `sim publish`
import the fleet runner and paho only when called.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from shared.errors import ConfigError
from sim.drift import Drift
from sim.machine import SENSORS, MachineConfig, SimulatedMachine

log = logging.getLogger(__name__)

CHUNK = 10_000  # readings simulated per block by `sim readings`
SENSOR_TOPIC = "sensors/{device_id}/readings"  # mosquitto/acl: user sim writes, each device reads its own
CONNECT_TIMEOUT_S = 15.0


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

    publish = sub.add_parser(
        "publish", help="publish simulated sensor readings over MQTT, one machine per device (the plant's sensors)",
        description="Simulate the machines of devices dev-0 … dev-{N-1} (the cohorts and seeds of `sim fleet`) "
        'and publish each reading as JSON ({"ts": …, "values": {sensor: value}}) to TOPIC with {device_id} '
        "replaced, RATE readings per second per machine: the sensors that agents with the mqtt source read. "
        "Runs until Ctrl-C or SIGTERM, or for --duration seconds; prints a JSON summary line.",
    )
    publish.add_argument("--devices", type=int, default=3, metavar="N", help="number of machines (default 3)")
    publish.add_argument("--seed", type=int, default=1, help="seed the device seeds derive from (default 1)")
    publish.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    publish.add_argument("--port", type=int, default=1883, help="broker port (default 1883)")
    publish.add_argument("--username", default="sim", help="broker username (default sim)")
    publish.add_argument("--password-file", type=Path, required=True, metavar="FILE",
                         help="file holding the broker password (never on the command line)")
    publish.add_argument("--tls-ca", type=Path, metavar="FILE",
                         help="CA certificate to verify the broker against: MQTT over TLS (default: plain text)")
    publish.add_argument("--topic", default=SENSOR_TOPIC,
                         help="topic template; {device_id} is replaced (default %(default)s)")
    publish.add_argument("--rate", type=float, default=1.0, help="readings per second per machine (default 1)")
    publish.add_argument("--qos", type=int, choices=[0, 1], default=1, help="MQTT QoS (default 1)")
    publish.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: until stopped)")
    return parser


def run(args: argparse.Namespace) -> int:
    return {"fleet": _fleet, "readings": _readings, "publish": _publish}[args.command](args)


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{what} is not valid JSON: {exc}") from None


def _readings(args: argparse.Namespace) -> int:
    if args.steps < 0:
        raise ConfigError("--steps must be >= 0")
    try:
        config = msgspec.convert(_json_arg(args.config, "--config"), MachineConfig) if args.config else MachineConfig()
        raw = _json_arg(args.drift, "--drift") if args.drift else []
        drifts = msgspec.convert(raw if isinstance(raw, list) else [raw], list[Drift])
    except ValueError as exc:
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


def _publish(args: argparse.Namespace) -> int:
    """`sim publish`: step every machine once per period and publish its reading; paho reconnects by itself."""
    import paho.mqtt.client as mqtt

    from fleetloop.fleet import plan_fleet, sigterm_as_interrupt
    from infra.mqtt import build_client, close_client

    if args.rate <= 0:
        raise ConfigError("--rate must be > 0 readings per second")
    if "{device_id}" not in args.topic:
        raise ConfigError(f"--topic {args.topic!r} has no {{device_id}}: every machine needs a topic of its own")
    try:
        password = args.password_file.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read --password-file {args.password_file}: {exc.strerror}") from None
    machines = [(args.topic.replace("{device_id}", s.device_id), SimulatedMachine(s.device_id, s.seed, s.machine))
                for s in plan_fleet(args.devices, args.seed)]

    connected = threading.Event()
    refused: list[str] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            refused.append(str(reason_code))
        connected.set()

    try:
        client = build_client(f"fleetloop-sim-{os.getpid()}", username=args.username, password=password,
                              tls_ca=str(args.tls_ca) if args.tls_ca else None, logger=f"{__name__}.paho")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot use --tls-ca {args.tls_ca}: {exc}") from None
    client.max_queued_messages_set(10 * len(machines))  # while the broker is away, old readings are dropped
    client.on_connect = on_connect
    client.connect_async(args.host, args.port, keepalive=30)
    client.loop_start()
    period, published, dropped, last = 1.0 / args.rate, 0, 0, None
    try:
        if not connected.wait(CONNECT_TIMEOUT_S) or refused:
            why = refused[0] if refused else f"no answer within {CONNECT_TIMEOUT_S:.0f} s"
            raise ConfigError(f"cannot publish to {args.host}:{args.port} as {args.username!r}: {why}")
        log.info("publishing %d machines to %s at %g readings/s each", len(machines), args.topic, args.rate)
        start_ts, next_at = time.time(), time.monotonic()
        stop_at = next_at + args.duration if args.duration is not None else None
        with sigterm_as_interrupt():
            try:
                while stop_at is None or next_at < stop_at:
                    time.sleep(max(0.0, next_at - time.monotonic()))
                    for topic, machine in machines:
                        step = machine.step()
                        payload = json.dumps({"ts": start_ts + step.t * period,
                                              "values": dict(zip(SENSORS, step.values.tolist(), strict=True))})
                        info = client.publish(topic, payload, qos=args.qos)
                        if info.rc == mqtt.MQTT_ERR_SUCCESS:
                            published, last = published + 1, info
                        else:
                            dropped += 1
                            if dropped == 1 or dropped % 10_000 == 0:
                                log.warning("broker unreachable: %d readings dropped so far", dropped)
                    next_at += period
            except KeyboardInterrupt:
                log.info("stopping")
        if last is not None and args.qos:
            last.wait_for_publish(5.0)  # in order: the last one acknowledged means all were
    finally:
        close_client(client)
    sys.stdout.write(json.dumps({"devices": len(machines), "published": published, "dropped": dropped}) + "\n")
    return 0
