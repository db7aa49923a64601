"""`fleetloop hub …`: run the hub (`serve`, `ingest`), and operate the running hub through its HTTP API.

`serve` and `ingest` own the data dir and the broker connection. Every other command is a client of the
running hub (`hub.app.client`): it never opens the broker or the database, so it acts on the fleet the hub
serves, with the hub's checks and audit trail. Exit codes of the client commands: 0 done; 1 the hub refused
(4xx: token, role, state, input); 2 usage or settings, or the hub cannot be reached; 3 the hub failed (5xx).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hub.app.client import DEFAULT_URL, TOKEN_ENV, TOKEN_FILE_ENV, URL_ENV
from hub.app.render import gate_lines
from hub.app.settings import HubSettings
from hub.errors import HubClientError
from infra.cliformat import accept_relative_times
from shared.errors import ConfigError

__all__ = ["EXIT_CODES", "build_parser", "gate_lines", "run"]

EXIT_CODES = """\
exit codes: 0 done; 1 the hub refused (4xx: token, role, state or input); 2 usage or settings error, or the hub
cannot be reached; 3 the hub failed (5xx)."""
CLIENT_HELP = (f"Commands other than serve and ingest call the running hub's API: --hub URL or {URL_ENV} (default "
               f"{DEFAULT_URL}); the token from {TOKEN_ENV}, or the file in --token-file / {TOKEN_FILE_ENV}.")
INCIDENT_ACTIONS = ["list", "show", "ack", "resolve", "missed"]
VERDICTS = ["confirmed_fault", "false_alarm", "no_fault_found"]
ROLLOUT_ACTIONS = ["start", "list", "show", "pause", "resume", "promote", "rollback", "abort", "revert", "retry"]


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="The hub: ingest, API, drift, labels. " + CLIENT_HELP,
                                     epilog=EXIT_CODES)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def client(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help + ". " + CLIENT_HELP, epilog=EXIT_CODES)
        p.add_argument("--hub", metavar="URL", help=f"the hub API (default ${URL_ENV} or {DEFAULT_URL})")
        p.add_argument("--token-file", type=Path, help=f"file whose first line is the API token (or ${TOKEN_ENV})")
        p.add_argument("--json", action="store_true", help="print the hub's JSON answer (for scripts)")
        return p

    serve = sub.add_parser("serve", help="run ingest, the drift scheduler and the HTTP API in one process")
    _settings_args(serve)
    serve.add_argument("--host", help="API listen address (default from settings: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="API port (default from settings: 8000)")

    ingest = sub.add_parser("ingest", help="run one ingest worker (start several: they share the load)")
    _settings_args(ingest)

    client("devices", "the device registry: presence, model version, cohort, last seen")

    drift = client("drift", "the latest drift report of every scope (fleet, cohort, device)")
    drift.add_argument("--scope", help="only this scope (e.g. fleet, device:dev-3)")
    drift.add_argument("--all", action="store_true", help="every stored report, not only the latest per scope")
    drift.add_argument("--limit", type=int, default=200, help="reports to read (default 200)")

    performance = client("performance", "each version's realized performance on returned labels and its label-free "
                         "estimate from the scores it served, per scope, with the estimate's error")
    performance.add_argument("--version", help="only this model version")

    retrain = client("retrain", "retrain now from the validated labels, gate the candidate, print the verdict")
    retrain.add_argument("--reason", required=True, help="why (recorded with the model version)")
    retrain.add_argument("--label-set", help="train on this label set (default: validate labels now)")
    retrain.add_argument("--actor", help="who asks (recorded as operator:<actor>)")
    retrain.add_argument("--regimes", choices=["parent", "field", "auto"],
                         help="feature set 2's regime statistics: keep the active model's (parent), learn them from "
                         "the devices' raw windows (field), or learn them only when the field runs far from the "
                         "active model's (auto); default: the hub's training.regimes")
    retrain.add_argument("--no-wait", action="store_true", help="print the queued job and return")
    retrain.add_argument("--timeout", type=float, default=1800.0, help="longest wait for the job (s; default 1800)")

    client("regimes", "the active model's operating regimes (feature set 2) beside what the devices' raw windows "
           "give: field readings per regime, the share far from every regime, the regimes the field alone shows")

    models = client("models", "the model registry: versions, status, gate verdicts, audit trail; register one")
    models.add_argument("version", nargs="?", help="show one version with its gate decision and audit trail")
    models.add_argument("--register", type=Path, metavar="DIR",
                        help="register and sign a version directory (a path on the hub's host); it is gated "
                             "against the active version unless --skip-gate")
    models.add_argument("--skip-gate", action="store_true", help="register without the gate, or clear VERSION (a "
                        "candidate, or one the gate could not judge for too few labels) unjudged (needs --reason; "
                        "recorded in the audit trail)")
    models.add_argument("--reason", help="why (required with --register)")
    models.add_argument("--status", help="list only versions with this status (candidate, active, …)")
    models.add_argument("--limit", type=int, default=100)

    rollout = client("rollout", "start, inspect, pause, resume, promote, roll back, revert or retry a rollout")
    rollout.add_argument("action", choices=ROLLOUT_ACTIONS, help="revert: roll the previous active version out "
                         "again; retry ID: a new rollout of a candidate whose rollout failed to fetch")
    rollout.add_argument("target", nargs="?", help="the candidate version (start) or the rollout id (any unique "
                         "prefix)")
    rollout.add_argument("--reason", help="why (required for every change; recorded with who and when)")
    rollout.add_argument("--canary", default="0.1", help="share of devices (0.1) or a list of device ids")
    rollout.add_argument("--shadow", action="store_true", help="shadow stage first")
    rollout.add_argument("--actor", help="who (recorded as operator:<actor>)")
    rollout.add_argument("--health-limit", action="append", default=[], metavar="NAME=VALUE",
                         help="override one of the hub's rollout_limits for this rollout (start; repeatable), "
                              "e.g. rollback_anomaly_factor=10")
    rollout.add_argument("--limit", type=int, default=20, help="rollouts to list (default 20)")

    reference = accept_relative_times(
        client("reference", "a version's drift reference: take it from a window of live traffic, show it"))
    reference.add_argument("action", choices=["take", "show"])
    reference.add_argument("version", help="the model version whose reference it is")
    reference.add_argument("--start", help="window start: ISO time, relative (-2h) or unix seconds (take)")
    reference.add_argument("--end", default="now", help="window end (take; default now)")
    reference.add_argument("--devices", help="only these devices, comma-separated (take; default all)")
    reference.add_argument("--reason", help="why (required for take; recorded)")

    incidents = accept_relative_times(client(
        "incidents", "incidents (alarm windows grouped per device): list, show, ack, resolve (one or many), report a "
        "missed failure"))
    incidents.add_argument("action", choices=INCIDENT_ACTIONS)
    incidents.add_argument("ids", nargs="*", metavar="ID", help="incident id(s): show/ack take one, resolve several")
    incidents.add_argument("--technician", help="who acts (ack, resolve, missed; recorded with the labels)")
    incidents.add_argument("--verdict", choices=VERDICTS, help="resolve: the technician's verdict")
    incidents.add_argument("--fault-type", help="the fault (a confirmed fault or a missed failure, e.g. bearing)")
    incidents.add_argument("--note", help="free text kept with the incident and its labels")
    incidents.add_argument("--device", help="list: only this device; missed: the device")
    incidents.add_argument("--site", help="list: only this site")
    incidents.add_argument("--state", action="append", help="list: only this state (repeatable; default open, "
                           "acknowledged, closed, resolved)")
    incidents.add_argument("--since", help="list: last alarm at or after (ISO, -2h, unix s)")
    incidents.add_argument("--start", help="missed: range start (ISO, -2h, unix s)")
    incidents.add_argument("--end", default="now", help="missed: range end (default now)")
    incidents.add_argument("--limit", type=int, default=50, help="list: rows per page (default 50)")
    incidents.add_argument("--offset", type=int, default=0, help="list: skip this many (paging)")

    dead = client("dead-letters", "refused messages by reason, and the latest ones")
    dead.add_argument("--limit", type=int, default=20)
    dead.add_argument("--reason", help="only this reason (e.g. bad_json)")
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
    """One command; a client command's failure is one line on stderr and its exit code (see `EXIT_CODES`)."""
    if args.command == "serve":
        return _serve(args)
    if args.command == "ingest":
        return _ingest(args)
    from hub.app.commands import COMMANDS

    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # one line per request is noise unless debugging
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return COMMANDS[args.command](args)
    except HubClientError as exc:
        print(f"fleetloop hub {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code


def _until_signalled() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def bind_api(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound before anything starts; ConfigError in one line if the port is busy."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): another process has the port; "
                          "stop it or choose another with --port (api_port)") from None
    return sock


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hub.app.service import HubService

    settings = _settings(args, api_host=args.host, api_port=args.port)
    sock = bind_api(settings.api_host, settings.api_port)
    try:
        service = HubService(settings)
    except BaseException:
        sock.close()
        raise
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
        server.run(sockets=[sock])
    finally:
        service.stop()
        sock.close()
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from hub.app.service import HubService

    service = HubService(_settings(args), jobs=False)  # a plain worker: the jobs run in `hub serve`
    stop = _until_signalled()
    service.start()
    if service.worker.wait_ready(30):  # one line once subscribed: scripts and tests start publishing after it
        print(json.dumps({"ready": service.worker.client_id}), flush=True)
    while not stop.wait(10):
        _ingest_status(service.worker)
    service.stop()
    _ingest_status(service.worker)  # the last word: what this worker did in all
    return 0


def _ingest_status(worker: Any) -> None:
    """One JSON line of an ingest worker's counters and its recent publish → commit lag."""
    s = worker.stats()
    p50, p99 = worker.lag_quantiles(0.5, 0.99)
    print(json.dumps({"stored": s.stored, "duplicates": s.duplicates, "dead_letters": s.dead_letters,
                      "pending": s.pending, "processed": s.processed, "lag_p50_s": p50, "lag_p99_s": p99}),
          flush=True)
