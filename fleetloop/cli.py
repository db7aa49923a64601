"""`fleetloop GROUP …`: one console command whose groups import their side lazily.

Each group is a module exposing ``build_parser(prog) -> ArgumentParser`` and ``run(args) -> int``.
A gateway with only the agent extra can run ``fleetloop agent …``; a group whose dependencies are
missing says exactly what to install.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from shared.errors import FleetloopError

# group -> (module, extra it needs, one-line help)
GROUPS: dict[str, tuple[str, str, str]] = {
    "agent": ("agent.cli", "agent", "run the gateway agent, annotate faults, manage its local models"),
    "hub": ("hub.app.cli", "hub", "run the hub: ingest, API, drift, retraining and rollouts"),
    "models": ("models.cli", "hub", "build model versions (the initial recipe) and inspect them"),
    "sim": ("fleetloop.simcli", "agent", "run a simulated sensor fleet against a broker"),
    "broker": ("fleetloop.devbroker.cli", "agent", "run a local development mosquitto with the project's config"),
    "provision": ("fleetloop.provision", "agent", "broker credentials and device slots for docker compose"),
    "dev": ("fleetloop.devup", "hub", "a production-like fleet on this machine to operate by hand, until Ctrl-C"),
    "demo": ("fleetloop.demo", "hub", "the whole loop on a simulated fleet: drift, labels, retrain, gate, rollout"),
    "eval": ("fleetloop.evaluation.cli", "hub", "measure the loop on public data (cmapss: NASA C-MAPSS replay)"),
}


class _Version(argparse.Action):
    """``--version``: the installed version, looked up only when asked for (every command builds this parser)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the program's version number and exit", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from fleetloop import __version__

        sys.stdout.write(f"fleetloop {__version__}\n")
        parser.exit()


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleetloop",
        description="Predictive-maintenance feedback loop for industrial fleets.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="groups:\n" + "\n".join(f"  {name:<9} {h}" for name, (_, _, h) in GROUPS.items()),
    )
    parser.add_argument("--version", action=_Version)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("group", choices=list(GROUPS), metavar="GROUP", help="one of: " + ", ".join(GROUPS))
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


# what each extra provides (top-level import names)
EXTRAS: dict[str, tuple[str, ...]] = {
    "agent": ("onnxruntime", "paho", "cryptography"),
    "hub": ("onnxruntime", "paho", "cryptography", "sqlite_utils", "pydantic_settings", "sklearn",
             "skl2onnx", "onnx", "scipy", "fastapi", "uvicorn"),
}


def load_group(name: str) -> ModuleType:
    """Import a group's module, or raise FleetloopError naming the extra to install."""
    module_name, extra, _ = GROUPS[name]
    missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
    if missing:
        raise FleetloopError(
            f"'fleetloop {name}' needs the {extra} extra ({', '.join(missing)} not installed): "
            f"pip install 'fleetloop[{extra}]'"
        )
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        absent = exc.name or "a dependency"
        raise FleetloopError(
            f"'fleetloop {name}' needs the {extra} extra ({absent} is not installed): "
            f"pip install 'fleetloop[{extra}]'"
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = _top_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2) if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        module = load_group(args.group)
        sub = module.build_parser(f"fleetloop {args.group}")
        sub_args = sub.parse_args(args.rest)
        return int(module.run(sub_args) or 0)
    except FleetloopError as exc:
        print(f"fleetloop {args.group}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
