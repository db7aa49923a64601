"""`fleetloop eval …`: run the feedback loop on public data and measure it.

``fleetloop eval cmapss --data DIR`` replays NASA C-MAPSS through the product (see `fleetloop.evaluation.loop`):
progress lines while it runs, a table at the end, and with ``--json`` one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import get_args

from fleetloop.evaluation.settings import (
    DEFAULT_FLEET,
    DEFAULT_TRAIN_REF,
    PROFILES,
    LabelPolicy,
    RegimesFrom,
    config_for,
)

log = logging.getLogger(__name__)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Measure the feedback loop on public datasets.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    c = sub.add_parser(
        "cmapss", help="replay NASA C-MAPSS through agents, broker, hub, retrain, gate and rollout; score the models",
        description="A v1 model trained on --train-ref serves gateways that replay the --fleet engines; simulated "
        "technicians label feedback engines after they fail; the hub retrains, gates and rolls out. Prints F1, "
        "recall, false-alarm rate and ROC-AUC on the evaluation engines for the static v1, the loop's model and an "
        "oracle, with the labels consumed, retrains and recovery time. Ctrl-C stops everything cleanly.")
    c.add_argument("--data", type=Path, metavar="DIR", help="folder holding the C-MAPSS files (default: "
                   "FLEETLOOP_DATASETS/cmapss, else ../shared/datasets/cmapss)")
    c.add_argument("--train-ref", default=DEFAULT_TRAIN_REF, metavar="FILE",
                   help=f"training file v1 learns from (default {DEFAULT_TRAIN_REF})")
    c.add_argument("--fleet", default=DEFAULT_FLEET, metavar="FILE",
                   help=f"training file whose engines the fleet replays (default {DEFAULT_FLEET})")
    c.add_argument("--fast", action="store_true", help="a run of under a minute: "
                   + ", ".join(f"{k} {v}" for k, v in PROFILES["fast"].items() if k != "timeout_s"))
    c.add_argument("--devices", type=int, metavar="N", help="gateway processes (default 8; --fast 5)")
    c.add_argument("--engines", type=int, metavar="N", help="replay a seeded subset of N engines (default all; "
                   "--fast at most 140)")
    c.add_argument("--rate", type=float, metavar="R", help="cycles per second per gateway (default 40; --fast 250)")
    c.add_argument("--seed", type=int, help="seeds the engine split, the replay order, labels and training "
                   "(default 7)")
    c.add_argument("--label-budget", type=float, metavar="F", help="labels at most this share of the fleet's "
                   "predictions (default 0.25)")
    c.add_argument("--label-policy", choices=get_args(LabelPolicy), help="which windows of a failed engine "
                   "technicians label: select, the hub's label-selection policy (a random fifth, then by operating "
                   "regime in turn, closest to the threshold first; the default); even, an evenly spaced share "
                   "(--fast's default)")
    c.add_argument("--free-run", action="store_true", help="let gateways replay at their own pace and the hub "
                   "run its triggers and rollouts on their wall-clock periods (default: lockstep, the replay held at "
                   "milestones of half an engine life while technicians, retrains and rollouts catch up, so a seed "
                   "gives the same run on a slow or a fast machine)")
    c.add_argument("--label-delay", type=int, metavar="CYCLES", help="cycles between an engine's failure and its "
                   "labels (default 20)")
    c.add_argument("--feature-set", type=int, choices=(1, 2), metavar="N", help="1: window features of the raw "
                   "readings; 2: readings normalised by operating regime, window features, then 15/30-cycle means, "
                   "an EWM per sensor and time in service (default 2; --fast 1)")
    c.add_argument("--regimes", choices=get_args(RegimesFrom), help="feature set 2's operating regimes: "
                   "commissioned, fitted before the run on the training file and the feedback engines' readings (the "
                   "default); field, v1 knows the training file's only and the hub learns the fleet's from the raw "
                   "windows the devices upload (training.regimes auto)")
    c.add_argument("--workdir", type=Path, metavar="DIR", help="keep the broker, hub, models and gateway data here "
                   "(default: a temporary directory, removed afterwards)")
    c.add_argument("--json", action="store_true", help="print the result as one JSON object, last")
    return parser


def run(args: argparse.Namespace) -> int:
    from fleetloop.evaluation.loop import run_eval
    from infra.datasets import default_datasets_dir

    data = args.data if args.data is not None else default_datasets_dir() / "cmapss"
    config = config_for("fast" if args.fast else "default", data, train_ref=args.train_ref, fleet=args.fleet,
                        devices=args.devices, engines=args.engines, rate=args.rate, seed=args.seed,
                        label_budget=args.label_budget, label_policy=args.label_policy, label_delay=args.label_delay,
                        lockstep=False if args.free_run else None, feature_set=args.feature_set, regimes=args.regimes,
                        workdir=args.workdir)
    report = run_eval(config)
    sys.stdout.write(report.table() + "\n")
    if args.json:
        sys.stdout.write(json.dumps(report.to_json()) + "\n")
    return 0
