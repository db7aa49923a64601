"""`fleetloop dev …`: a production-like fleet on this machine to operate by hand.

``dev up`` starts the broker (ACL, a password per device), the hub (not in dev mode: a signing key file, tokens
per role) and N simulated agents with the hub's key pinned (`fleetloop.devfleet.DevFleet`), prints the API URL,
the tokens and commands to paste, and stays up until Ctrl-C (SIGINT or SIGTERM), which stops the agents, the hub
and the broker in that order. Its state directory is reused: same tokens, keys, passwords and data next time.

Unless ``--no-technicians``, simulated technicians label the fleet from the simulator's ground truth on the
product's own paths (`fleetloop.technicians`): one per site works the hub's labelling queue over HTTP with the
technician token, and one on site annotates the windows the devices kept to themselves in the agents' own
databases (as ``fleetloop agent annotate``), so there are validated labels to retrain on.

``dev drift`` injects a sensor offset into running simulated agents: it writes the request to
``<dir>/drift.json``; the ``dev up`` process restarts those agents with the drift and acknowledges it in
``<dir>/drift.applied.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import msgspec

from fleetloop.devbroker import DevBroker, free_port, port_is_free
from fleetloop.devfleet import DevFleet, new_tokens
from fleetloop.fleet.plan import DeviceSpec, plan_fleet
from shared.errors import ConfigError
from shared.manifest import MANIFEST_FILE
from shared.wire import to_json_data
from sim.drift import Drift
from sim.technicians import SimDevice

log = logging.getLogger(__name__)

STATE_FILE = "devup.json"
PID_FILE = "devup.pid"
DRIFT_FILE = "drift.json"
APPLIED_FILE = "drift.applied.json"
# A fleet to watch by hand: drift every minute over the last half hour, rollouts looked at every 5 s.
HUB_SETTINGS = {"FLEETLOOP_HUB_DRIFT__INTERVAL_S": "60", "FLEETLOOP_HUB_DRIFT__WINDOW_S": "1800",
                "FLEETLOOP_HUB_ROLLOUT_TICK_S": "5", "FLEETLOOP_HUB_INGEST_CLIENT_ID": "devup-ingest"}
# With the simulated technicians on. The on-site one keeps a maintenance log at the machines (`fleetloop agent
# annotate`'s path): failures and inspections as time ranges, whose windows the devices mostly kept to themselves
# and upload when the hub asks: every 5 s (60 s), so the labels join within seconds.
TECHNICIAN_SETTINGS = {"FLEETLOOP_HUB_TRACE_REQUEST_INTERVAL_S": "5"}


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="A production-like fleet on this machine, by hand.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="broker, hub and simulated agents, wired together, until Ctrl-C")
    up.add_argument("--agents", type=int, default=4, help="simulated devices (default %(default)s)")
    up.add_argument("--dir", type=Path, default=Path("var/dev"), help="state directory, reused (default %(default)s)")
    up.add_argument("--api-port", type=int, help="hub API port (default: the last one, else a free one)")
    up.add_argument("--mqtt-port", type=int, help="broker port (default: the last one, else a free one)")
    up.add_argument("--seed", type=int, default=0, help="simulator seed of the fleet (default %(default)s)")
    up.add_argument("--rate", type=float, default=20.0, help="readings a second per device (default %(default)s)")
    up.add_argument("--no-technicians", dest="technicians", action="store_false",
                    help="no simulated technicians (by default they label the fleet through the hub's API, with the "
                         "technician token, and at the machines)")
    up.add_argument("--hub-setting", action="append", default=[], metavar="NAME=VALUE",
                    help="a hub setting for this run (repeatable), as its env name or without the FLEETLOOP_HUB_ "
                         "prefix, e.g. drift__interval_s=10 or FLEETLOOP_HUB_ROLLOUT_TICK_S=1")
    drift = sub.add_parser("drift", help="restart running simulated agents with a sensor offset (or without)")
    drift.add_argument("--dir", type=Path, default=Path("var/dev"), help="the dev up state directory")
    drift.add_argument("--devices", required=True, help="comma-separated device ids, e.g. dev-1,dev-2")
    drift.add_argument("--sensor", default="temperature", help="sensor to offset (default %(default)s)")
    drift.add_argument("--offset", type=float, default=5.0, help="added to every reading (default %(default)s)")
    drift.add_argument("--clear", action="store_true", help="remove the devices' drifts instead")
    drift.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the restart")
    return parser


def run(args: argparse.Namespace) -> int:
    return _up(args) if args.command == "up" else _drift(args)


# --- dev up ------------------------------------------------------------------------------------------------------


def _port(requested: int | None, saved: int | None, flag: str) -> int:
    if requested is not None:
        if not port_is_free(requested):
            raise ConfigError(f"port {requested} is busy: choose another with {flag}, or stop what listens there")
        return requested
    return saved if saved and port_is_free(saved) else free_port()


def hub_settings(items: list[str], *, technicians: bool = False) -> dict[str, str]:
    """`HUB_SETTINGS` (and `TECHNICIAN_SETTINGS` with `technicians`) with the ``--hub-setting NAME=VALUE``
    overrides (NAME: env name, prefix optional)."""
    settings = {**HUB_SETTINGS, **(TECHNICIAN_SETTINGS if technicians else {})}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().upper()
        if not sep or not name:
            raise ConfigError(f"--hub-setting {item!r}: expected NAME=VALUE, e.g. drift__interval_s=10")
        settings[name if name.startswith("FLEETLOOP_HUB_") else "FLEETLOOP_HUB_" + name] = value
    return settings


def _running_pid(root: Path) -> int | None:
    """The pid of a ``dev up`` running on `root`, if one is."""
    try:
        pid = int((root / PID_FILE).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def initial_model(root: Path, seed: int) -> Path:
    """The fleet's first version, ``<root>/models/v1``: built once, then reused with the state directory (so a copy
    of one built earlier by this function, with the same seed, is used as it is)."""
    out = root / "models" / "v1"
    if not (out / "manifest.json").exists():
        from models.initial import build_initial

        log.info("building the initial model (once) in %s", out)
        build_initial(out, seed=seed, n_machines=30, steps=2500)
    return out


def _up(args: argparse.Namespace) -> int:

    if args.agents < 1:
        raise ConfigError("--agents must be at least 1")
    settings = hub_settings(args.hub_setting, technicians=args.technicians)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per poll of the hub
    root = args.dir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    if (pid := _running_pid(root)) is not None:
        raise ConfigError(f"a fleet is already up in {root} (pid {pid}): stop it with Ctrl-C there, or use --dir")
    state_path = root / STATE_FILE
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
    tokens = state.get("tokens") or new_tokens()
    api_port = _port(args.api_port, state.get("api_port"), "--api-port")
    mqtt_port = _port(args.mqtt_port, state.get("mqtt_port"), "--mqtt-port")
    state.update(tokens=tokens, api_port=api_port, mqtt_port=mqtt_port)
    state_path.write_text(json.dumps(state, indent=2) + "\n")
    state_path.chmod(0o600)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    specs = plan_fleet(args.agents, args.seed)
    broker = DevBroker(root / "broker", port=mqtt_port, devices=[s.device_id for s in specs])
    broker.start()
    fleet: DevFleet | None = None
    technicians: Technicians | None = None
    (root / PID_FILE).write_text(str(os.getpid()))
    try:
        model = initial_model(root, args.seed)
        fleet = DevFleet(root, broker, model, tokens=tokens, api_port=api_port,
                         hub_settings=settings, agent_defaults={"stats_interval_s": 5.0, "sample_rate": 0.05},
                         source={"kind": "sim", "rate": args.rate})
        fleet.start_hub(timeout=60)
        drifts = _requested_drifts(root)
        started = time.time()
        for spec in specs:
            _start_agent(fleet, spec, drifts.get(spec.device_id, []), start_ts=started)
        if args.technicians:
            technicians = Technicians(fleet, specs, model, since=started - 1.0)
        _write_applied(root, {d: drifts.get(d, []) for d in fleet.agents})
        _announce(fleet, root, broker, technicians=technicians is not None)
        _wait_reporting(fleet, [s.device_id for s in specs], stop)
        if technicians is not None:
            technicians.start()
        _supervise(fleet, root, stop, technicians)
        return 0
    finally:
        log.info("stopping: technicians, agents, then the hub, then the broker")
        if technicians is not None:
            technicians.stop()
        if fleet is not None:
            fleet.close()
        broker.stop()
        (root / PID_FILE).unlink(missing_ok=True)
        print("fleet stopped", flush=True)


def _start_agent(fleet: DevFleet, spec: DeviceSpec, drifts: list[dict[str, Any]], *, start_ts: float) -> None:
    """Start (or restart) `spec`'s agent with `drifts`: its machine starts over, its clock from `start_ts`."""
    source = {**fleet.source, "seed": spec.seed, "sim_config": to_json_data(spec.machine),
              "drifts": drifts, "start_ts": start_ts}
    if spec.device_id in fleet.agents:
        fleet.stop_agent(spec.device_id)
    fleet.start_agent(spec.device_id, site=spec.machine.site, asset_type=spec.machine.asset_type, source=source)


class Technicians:
    """The simulated technicians of a dev fleet (`fleetloop.technicians`), working every second in a thread."""

    def __init__(self, fleet: DevFleet, specs: list[DeviceSpec], model: Path, *, since: float) -> None:
        from fleetloop.technicians import technician_desk  # the agent and the hub's modules: not for `dev drift`
        from hub.app.periodic import Periodic

        manifest = json.loads((model / MANIFEST_FILE).read_text())
        horizon = int(manifest.get("training", {}).get("params", {}).get("horizon") or 100)
        self.rate = float(fleet.source["rate"])
        self.specs = {s.device_id: s for s in specs}
        devices = {d: self.device(d, fleet.agent_config(d, **fleet.overrides[d])["source"]) for d in self.specs}
        self.desk, self.inbox, self.logs = technician_desk(
            devices, hub_url=fleet.url, token=fleet.tokens["technician"], agents_dir=fleet.root / "agents",
            prefix=fleet.broker.prefix, horizon=horizon, since=since)
        self.job = Periodic("technicians", 1.0, self.desk.run)

    def device(self, device_id: str, source: dict[str, Any]) -> SimDevice:
        """`device_id`'s machine as its agent's source runs it (seed, machine, drifts, clock origin, pace)."""
        drifts = msgspec.convert(source.get("drifts", []), list[Drift])
        spec = replace(self.specs[device_id], drifts=tuple(drifts))
        return spec.sim_device(start_ts=float(source["start_ts"]), rate=self.rate)

    def restarted(self, device_id: str, source: dict[str, Any]) -> None:
        self.desk.restarted(self.device(device_id, source))

    def start(self) -> None:
        self.job.start()

    def stop(self) -> None:
        self.job.stop()
        self.inbox.close()
        self.logs.close()


def _announce(fleet: DevFleet, root: Path, broker: DevBroker, *, technicians: bool) -> None:
    """The URL, the tokens and the commands to paste; also written to ``<dir>/env.sh``."""
    exports = (f"export FLEETLOOP_HUB_URL={fleet.url} "
               f"FLEETLOOP_HUB_TOKEN={shlex.quote(fleet.tokens['operator'])}")
    env_sh = root / "env.sh"
    env_sh.write_text(exports + "\n")
    env_sh.chmod(0o600)
    lines = [
        f"fleet up in {root}: {len(fleet.agents)} simulated agents, broker {broker.url}",
        f"API        {fleet.url}   (docs {fleet.url}/docs, metrics {fleet.url}/metrics)",
        *(f"token      {role:<11} {fleet.tokens[role]}" for role in ("operator", "technician", "viewer")),
        "",
        "In another terminal:",
        f"  {exports}      # or: source {env_sh}",
        "  fleetloop hub devices",
        '  curl -s -H "Authorization: Bearer $FLEETLOOP_HUB_TOKEN" $FLEETLOOP_HUB_URL/devices',
        f"  fleetloop dev drift --dir {shlex.quote(str(root))} --devices dev-1 --sensor temperature --offset 5",
        "",
        ("Simulated technicians label the fleet with the technician token (the hub's queue) and at the machines "
         "(the agents' databases); --no-technicians turns them off." if technicians else
         "No simulated technicians (--no-technicians): nothing labels the fleet but you."),
        "",
        "Ctrl-C stops everything.",
    ]
    print("\n".join(lines), flush=True)


def _wait_reporting(fleet: DevFleet, devices: list[str], stop: threading.Event, timeout: float = 120.0) -> None:
    """Until the hub has every device online (or Ctrl-C); says which are missing when it takes too long."""
    deadline = time.monotonic() + timeout
    online: set[str] = set()
    with fleet.api("viewer") as api:
        while not stop.is_set():
            try:
                online = {d["device_id"] for d in api.get("/devices").json() if d.get("online")}
            except (httpx.HTTPError, ValueError, TypeError, KeyError):
                online = set()
            if set(devices) <= online:
                print(f"fleet ready: {len(devices)} devices online", flush=True)
                return
            if time.monotonic() > deadline:
                log.warning("still waiting for %s to report", ", ".join(sorted(set(devices) - online)))
                deadline = time.monotonic() + timeout
            stop.wait(0.5)


def _supervise(fleet: DevFleet, root: Path, stop: threading.Event, technicians: Technicians | None) -> None:
    """Until Ctrl-C: apply drift requests, and say when a child exits on its own (the hub: stop everything)."""
    reported: set[str] = set()
    while not stop.wait(0.5):
        if fleet.hub_proc is None or fleet.hub_proc.poll() is not None:
            log.error("the hub exited; its log:\n%s", fleet.log_tail("hub"))
            raise SystemExit(1)
        for device, proc in fleet.agents.items():
            if proc.poll() is not None and device not in reported:
                reported.add(device)
                log.warning("agent %s exited (code %s); its log: %s", device, proc.returncode,
                            root / "agents" / f"{device}.log")
        _apply_drifts(fleet, root, technicians)


def _requested_drifts(root: Path) -> dict[str, list[dict[str, Any]]]:
    path = root / DRIFT_FILE
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        log.error("%s is not JSON: ignored", path)
        return {}
    return {str(device): list(drifts) for device, drifts in data.items()}


def _applied(root: Path) -> dict[str, list[dict[str, Any]]]:
    path = root / APPLIED_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _write_applied(root: Path, applied: dict[str, list[dict[str, Any]]]) -> None:
    tmp = root / (APPLIED_FILE + ".tmp")
    tmp.write_text(json.dumps(applied, indent=2) + "\n")
    tmp.replace(root / APPLIED_FILE)


def _apply_drifts(fleet: DevFleet, root: Path, technicians: Technicians | None = None) -> None:
    """Restart the agents whose requested drifts differ from the ones they run with (their machines start over
    with a new clock origin; the technicians judge their windows against the new run)."""
    requested, applied = _requested_drifts(root), _applied(root)
    if all(requested.get(d, []) == applied.get(d, []) for d in fleet.agents):
        return
    for device in list(fleet.agents):
        want = requested.get(device, [])
        if want != applied.get(device, []):
            log.info("restarting %s with drifts %s", device, want or "none")
            source = {**fleet.agent_config(device, **fleet.overrides.get(device, {}))["source"],
                      "drifts": [dict(d) for d in want], "start_ts": time.time()}
            if technicians is not None:
                technicians.restarted(device, source)
            fleet.restart_agent(device, source=source)
            applied[device] = want
    _write_applied(root, applied)


# --- dev drift ---------------------------------------------------------------------------------------------------


def _drift(args: argparse.Namespace) -> int:
    from sim.drift import SensorOffset

    root = args.dir.resolve()
    if _running_pid(root) is None:
        raise ConfigError(f"no fleet is up in {root}: start one with `fleetloop dev up --dir {args.dir}`")
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    known = _applied(root)
    unknown = [d for d in devices if d not in known]
    if not devices or unknown:
        raise ConfigError(f"unknown device(s) {', '.join(unknown) or '(none given)'}; the fleet has "
                          f"{', '.join(sorted(known))}")
    try:
        drift = [] if args.clear else [to_json_data(SensorOffset(sensor=args.sensor, offset=args.offset, start_t=0))]
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[-1].strip()) from None
    requested = _requested_drifts(root)
    requested.update(dict.fromkeys(devices, drift))
    tmp = root / (DRIFT_FILE + ".tmp")
    tmp.write_text(json.dumps(requested, indent=2) + "\n")
    tmp.replace(root / DRIFT_FILE)
    deadline = time.monotonic() + args.timeout
    while any(_applied(root).get(d) != drift for d in devices):
        if time.monotonic() > deadline:
            raise ConfigError(f"the fleet in {root} did not restart {', '.join(devices)} within {args.timeout:.0f} s")
        time.sleep(0.2)
    what = "no drift" if args.clear else f"{args.sensor} {args.offset:+g}"
    print(f"{', '.join(devices)}: restarted with {what}", flush=True)
    return 0
