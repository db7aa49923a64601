"""`fleetloop models …`: build the initial model version and inspect model versions.

Errors are FleetloopErrors raised inside; `fleetloop.cli` turns them into a message and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.manifest import ModelManifest, dump_manifest


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Build model versions and inspect them.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="what to do")

    build = sub.add_parser(
        "build-initial",
        help="train the initial model on the simulator and write it as a new version directory",
        description="Simulate a fleet, train, check ONNX parity and write model.onnx + manifest.json "
        "into a new directory. Same seed, same model.",
    )
    build.add_argument("--out", required=True, type=Path, metavar="DIR", help="new version directory")
    build.add_argument("--seed", type=int, default=7, help="seed of the simulation and training (default 7)")
    build.add_argument("--version", default="v1", help="version string in the manifest (default v1)")
    build.add_argument("--if-missing", action="store_true",
                       help="do nothing if DIR already holds a valid model version (for container start-up)")

    show = sub.add_parser(
        "show",
        help="print the summary of a model version (verifies its sha256)",
        description="Print a model version's manifest summary after checking model.onnx against it.",
    )
    show.add_argument("dir", type=Path, metavar="DIR", help="a version directory")
    show.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.command == "build-initial":
        from models.initial import build_initial
        from models.version import read_version

        if args.if_missing and (args.out / "manifest.json").is_file():
            manifest, _ = read_version(args.out)
            sys.stdout.write(f"{args.out} already holds {manifest.version}; nothing to do\n")
            return 0
        manifest = build_initial(args.out, seed=args.seed, version=args.version)
        sys.stdout.write(f"wrote {args.out}\n{summarize(manifest)}")
        return 0
    if args.command == "show":
        from models.version import read_version

        manifest, _ = read_version(args.dir)
        sys.stdout.write(dump_manifest(manifest, indent=2).decode() + "\n" if args.json else summarize(manifest))
        return 0
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse only lets known commands through


def summarize(manifest: ModelManifest) -> str:
    """A few human-readable lines about a version: what it is, how good, where it came from."""
    m, t, w = manifest.metrics, manifest.training, manifest.window
    lines = [
        f"version      {manifest.version} (parent {manifest.parent_version or '-'})",
        f"created      {manifest.created} by {manifest.provenance.created_by}: {manifest.provenance.reason}",
        f"family       {manifest.model_family}, threshold {manifest.threshold:.4f}",
        f"window       {w.size} readings every {w.step}, sensors {', '.join(w.sensors)}",
        f"features     {len(manifest.feature_names)} (feature set v{w.feature_set_version})",
        f"training     {t.n_samples} rows, {t.n_positive} positive, {t.data_kind}, seed {t.seed}",
        f"fingerprint  {t.data_fingerprint[:16]}…",
        f"onnx sha256  {manifest.onnx_sha256}",
        "metrics      " + _fmt(m),
    ]
    lines += [f"  {name:<18} {_fmt(cm)}" for name, cm in sorted(manifest.cohort_metrics.items())]
    if manifest.regimes is not None:
        r = manifest.regimes
        lines.insert(5, f"regimes      {r.n_regimes} over {', '.join(r.settings)} (fitted on {sum(r.counts)} readings)")
    return "\n".join(lines) + "\n"


def _fmt(metrics: dict[str, float]) -> str:
    keys = ("f1", "recall", "precision", "false_alarm_rate", "roc_auc")
    return ", ".join(f"{k} {metrics[k]:.3f}" for k in keys if k in metrics)
