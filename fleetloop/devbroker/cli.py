"""`fleetloop broker …`: run a dev broker in the foreground until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import argparse
import logging
import signal
from types import FrameType

from fleetloop.devbroker.broker import DevBroker
from fleetloop.devbroker.config import HUB_USER
from shared.topics import DEFAULT_PREFIX

log = logging.getLogger(__name__)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="A local development mosquitto running the "
                                     "project's config (mosquitto/) with generated credentials.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_p = commands.add_parser("run", help="run a dev broker in the foreground until Ctrl-C",
                                description="Run a dev broker on 127.0.0.1 in the foreground. The hub and "
                                "device passwords are written to credentials.json (mode 0600) in the work dir.")
    run_p.add_argument("--port", type=int, default=None, help="TCP port on 127.0.0.1 (default: a free one)")
    run_p.add_argument("--devices", default="dev-0,dev-1,dev-2",
                       help="comma-separated device ids to create users for (default: %(default)s)")
    run_p.add_argument("--workdir", default=None, help="directory for config, credentials, persistence and "
                       "log; reused (same passwords, same sessions) across runs (default: a temporary dir)")
    run_p.add_argument("--prefix", default=DEFAULT_PREFIX, help="topic prefix (default: %(default)s)")
    return parser


def run(args: argparse.Namespace) -> int:
    """`fleetloop broker run`: start, report where the credentials are, and stop cleanly on Ctrl-C."""
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    broker = DevBroker(args.workdir, port=args.port, devices=devices, prefix=args.prefix)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        broker.start()
        log.info("dev broker listening on %s (prefix %r, %d devices, pid %s)", broker.url, broker.prefix,
                 len(broker.devices), broker.pid)
        log.info("credentials for %r and the devices: %s", HUB_USER, broker.credentials_path)
        log.info("log: %s; press Ctrl-C to stop", broker.log_path)
        code = None
        while code is None:
            code = broker.wait(0.5)
        if code == 0:
            log.info("mosquitto was stopped from outside")
            return 0
        log.error("mosquitto exited unexpectedly (code %s); log tail:\n%s", code, broker.log_tail())
        return 1
    except KeyboardInterrupt:
        log.info("stopping the dev broker")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if args.workdir:
            broker.stop()
        else:
            broker.close()
