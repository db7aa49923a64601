"""`fleetloop demo`: the whole loop in one command, on a compressed clock (`make demo`).

Starts mosquitto with the project's config on a free loopback port, the hub (its API on a loopback port, printed)
and a simulated fleet (12 agent processes in 3 cohorts by default), then plays the story in `fleetloop.story`:
healthy operation, a bad sensor recalibration on one site, drift detected, technicians labelling, retrain, gate,
canary, fleet; then a flipped-label candidate the gate blocks, and a candidate that fails on its canary devices
and is rolled back. Live progress on stderr, a summary table on stdout, a self-contained HTML report, the hub's
console URL (`/console`, sign in with a token of this run). `--keep` leaves the fleet, the hub and its console
running after the story so it can be clicked through. Ctrl-C stops every agent, the hub and the broker.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from fleetloop.fleet import sigterm_as_interrupt
from fleetloop.story import PROFILES, StoryOptions, default_workdir, play
from fleetloop.story.console import summary_table
from fleetloop.story.profile import SCENARIOS
from fleetloop.story.words import headline
from shared.errors import ConfigError

log = logging.getLogger(__name__)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Run the closed loop on a simulated fleet: mosquitto, the hub and its API, agent "
        "processes, and a scripted story (drift → labels → retrain → gate → canary → fleet; a candidate the gate "
        "blocks; one rolled back on its canary). Live progress, a summary table, an HTML report, the hub's console "
        "(its URL is printed; --keep leaves it running). Ctrl-C stops it cleanly.")
    parser.add_argument("--devices", type=int, metavar="N",
                        help=f"simulated agents, one process each, dealt into 3 cohorts (default "
                        f"{PROFILES['default'].devices}; --fast {PROFILES['fast'].devices}; min 3)")
    parser.add_argument("--duration", type=float, default=1.0, metavar="X",
                        help="stretch the story's timed phases by X (healthy run, labelling, recovered fleet; "
                        "default 1.0; the default story takes about 2 minutes)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulated machines (default 1)")
    parser.add_argument("--report", type=Path, metavar="PATH",
                        help="where to write the HTML report (default: report.html in the work dir); the accuracy "
                        "plot goes next to it as <name>-accuracy.png")
    parser.add_argument("--workdir", type=Path, metavar="DIR", help="broker, hub, agents and the built initial model "
                        f"(kept for the next run) live here (default: {default_workdir()})")
    parser.add_argument("--port", type=int, help="broker port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--api-port", type=int, help="hub API port on 127.0.0.1 (default: a free one)")
    fast = PROFILES["fast"]
    parser.add_argument("--fast", action="store_true",
                        help=f"the short story for tests: {fast.devices} devices at {fast.rate:g} readings/s, a "
                        "smaller initial model, about a minute")
    parser.add_argument("--scenario", choices=SCENARIOS, default="drift",
                        help="what goes wrong on one site: 'drift' (default), a bad sensor recalibration the drift "
                        "job sees; 'new-failure-mode', machines failing in a way v1 never saw, healthy operation "
                        "unchanged: no drift fires, the technicians' labels show v1's recall dropping and the hub "
                        "retrains on that (no faulty-candidate phases)")
    parser.add_argument("--keep", action="store_true",
                        help="after the story, leave the fleet, the hub and its console running (the console URL "
                        "and sign-in tokens are printed) until Ctrl-C")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object, the last line")
    return parser


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("the demo's report needs matplotlib (not installed): pip install 'fleetloop[hub]'")
    profile = PROFILES["fast" if args.fast else "default"]
    if args.devices is not None:
        if args.devices < 3:
            raise ConfigError("--devices must be at least 3 (two cohorts, one of them drifting)")
        profile = replace(profile, devices=args.devices)
    profile = profile.scaled(args.duration).for_scenario(args.scenario)
    workdir = (args.workdir or default_workdir()).resolve()
    report = (args.report or workdir / "report.html").resolve()
    out = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 120)

    def kept(summary: dict[str, Any], tokens: dict[str, str]) -> None:
        _show(out, summary)
        out.print(f"console: {summary['console']}  (sign in with the operator token {tokens['operator']}; "
                  f"technician {tokens['technician']}, viewer {tokens['viewer']})", soft_wrap=True)
        out.print("the fleet, the hub and its console keep running (--keep): Ctrl-C stops them", soft_wrap=True)
        sys.stdout.flush()

    options = StoryOptions(profile=profile, seed=args.seed, workdir=workdir, report=report, broker_port=args.port,
                           api_port=args.api_port, keep=kept if args.keep else None)
    with sigterm_as_interrupt():
        summary = play(options)
    if summary["interrupted"]:
        log.info("interrupted: every agent, the hub and the broker are stopped (%.1f s)", summary["wall_s"])
    elif args.keep:
        log.info("every agent, the hub and the broker are stopped (%.1f s)", summary["wall_s"])
    else:
        _show(out, summary)
    if args.json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
    if summary["interrupted"]:
        return 130
    if summary["failed"]:
        log.error("the story stopped early: %s (logs in %s)", summary["failed"], workdir)
        return 1
    if not summary["agents_ok"]:
        log.error("some agents did not exit cleanly (exit codes %s); see %s/agents/*/agent.log",
                  summary["agent_exit_codes"], workdir)
        return 1
    return 0


def _show(out: Console, summary: dict[str, Any]) -> None:
    out.print(headline(summary))
    out.print(summary_table(summary))
    if summary["report"]:
        out.print(f"report: {summary['report']}  (plot: {summary['accuracy_png']})")
