"""Regime statistics learned from the field's raw windows, on real data: NASA C-MAPSS FD001 -> FD002.

Feature set 2 normalises every reading by its operating regime (`shared.regimes`). A fleet's regimes may not be
in the data a model was first fitted on (FD001 flies one of FD002's six flight conditions), so the hub learns them
from field data: the raw windows the agents keep for their random slice of predictions, each with `CONTEXT`
readings before it (`shared.features.context_features`). This asks how few such windows are enough.

For each way of getting the statistics, the same recipe (gradient boosting on FD001 plus the labelled feedback
half of FD002's engines, threshold on a validation fifth, by engine) is fitted with them and scored on the other
half of FD002's engines:

- ``base only``: fitted on FD001's readings (one regime: every FD002 reading is normalised by it);
- ``commissioned``: FD001 and every reading of the feedback engines (what `fleetloop eval` does at commissioning);
- ``field p%``: FD001 and the readings of a random p% of the feedback engines' windows, each with its context,
  as the hub gathers them from the devices (`hub.training.regimes`).

    .venv/bin/python bench/regimes.py [--datasets DIR] [--seed 7] [--shares 0.01,0.05] [--json]

Prints a table, then (``--json``) one JSON object as the last line. A run takes a few minutes (five fits).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.datasets import default_datasets_dir
from models.cmapss import CMAPSS_SENSORS, engine_windows, fit_cmapss, load_engines, split_engines
from models.regimes import fit_regimes
from models.training import classification_metrics, positive_scores
from shared.features import REGIMES, WindowSpec
from shared.history import CONTEXT
from shared.regimes import RegimeStats

WINDOW = WindowSpec(sensors=list(CMAPSS_SENSORS), size=5, step=1, feature_set_version=REGIMES)


def field_sample(engines: dict[int, np.ndarray], units: list[int], share: float, seed: int) -> list[np.ndarray]:
    """The readings behind a random `share` of each engine's windows, each window with `CONTEXT` readings before
    it, de-duplicated per engine (what the devices' raw windows give the hub)."""
    rng = np.random.default_rng(seed)
    out = []
    for unit in units:
        x = engines[unit]
        ends = np.arange(WINDOW.size - 1, len(x))
        picked = ends[rng.random(len(ends)) < share]
        keep = np.zeros(len(x), bool)
        for end in picked:
            keep[max(0, end - WINDOW.size - CONTEXT + 1): end + 1] = True
        if keep.any():
            out.append(x[keep])
    return out


def run(datasets: Path, seed: int, shares: list[float]) -> list[dict[str, object]]:
    base = load_engines(datasets / "cmapss" / "train_FD001.txt")
    fleet = load_engines(datasets / "cmapss" / "train_FD002.txt")
    feedback, evaluation = split_engines(sorted(fleet), (0.5, 0.5), seed)
    engines = {**{-u: r for u, r in base.items()}, **{u: fleet[u] for u in feedback}}
    units = sorted(engines)
    ways: list[tuple[str, list[np.ndarray]]] = [
        ("base only", [base[u] for u in sorted(base)]),
        ("commissioned", [engines[u] for u in units]),
        *((f"field {share:.0%}", [base[u] for u in sorted(base)] + field_sample(fleet, feedback, share, seed))
          for share in shares),
    ]
    rows = []
    for name, series in ways:
        started = time.monotonic()
        stats: RegimeStats = fit_regimes(series, WINDOW.sensors, seed=seed)
        fitted = fit_cmapss(engines, units, seed=seed, window=WINDOW, split=(0.8, 0.2, 0.0), regimes=stats)
        held = engine_windows(fleet, evaluation, WINDOW, regimes=stats)
        m = classification_metrics(held.y, positive_scores(fitted.estimator, held.X), fitted.threshold)
        wall = time.monotonic() - started
        rows.append({"stats": name, "regimes": stats.n_regimes, "readings": int(sum(stats.counts)),
                     "field_readings": int(sum(len(s) for s in series)) - sum(len(v) for v in base.values()),
                     "f1": round(m["f1"], 3), "recall": round(m["recall"], 3),
                     "false_alarm_rate": round(m["false_alarm_rate"], 3), "wall_s": round(wall, 1)})
        print(f"  {name}: F1 {m['f1']:.3f} ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", type=Path, default=None, help="the datasets folder (default: FLEETLOOP_DATASETS "
                   "or ../shared/datasets)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--shares", default="0.002,0.01,0.05", help="random slices of windows, comma-separated")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    datasets = args.datasets or default_datasets_dir()
    if not (datasets / "cmapss" / "train_FD002.txt").is_file():
        print(f"C-MAPSS is not under {datasets}/cmapss: stage it or pass --datasets", file=sys.stderr)
        return 2
    rows = run(datasets, args.seed, [float(s) for s in args.shares.split(",") if s])
    print(f"{'stats':<14} {'regimes':>7} {'field readings':>14} {'F1':>6} {'recall':>7} {'FAR':>6} {'wall s':>7}")
    for r in rows:
        print(f"{r['stats']:<14} {r['regimes']:>7} {r['field_readings']:>14,} {r['f1']:>6.3f} {r['recall']:>7.3f} "
              f"{r['false_alarm_rate']:>6.3f} {r['wall_s']:>7}")
    if args.json:
        print(json.dumps({"seed": args.seed, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
