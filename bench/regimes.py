"""Regime statistics learned from the field's raw windows, on real data: NASA C-MAPSS FD001 -> FD002.

Feature set 2 normalises every reading by its operating regime (`shared.regimes`). A fleet's regimes may not be
in the data a model was first fitted on (FD001 flies one of FD002's six flight conditions), so the hub learns them
from field data: the raw windows the agents keep for their random slice of predictions, each with `CONTEXT`
readings before it (`shared.features.context_features`). This asks how few such windows are enough, and what
they are worth before any label.

Each way of getting the statistics is fitted with the hub's own code (`hub.training.regimes.field_readings` over
raw window rows, then `learn_regimes` with the base set's readings); the same recipe (gradient boosting, threshold
on a validation fifth, by engine) is then trained on FD001 alone (``FD001 only``: no label from the fleet) and on
FD001 plus the labelled feedback half of FD002's engines (``+ labels``), and scored on the other half:

- ``base only``: FD001's readings (one regime: every FD002 reading is normalised by it);
- ``commissioned``: FD001 and every reading of the feedback engines (`fleetloop eval`'s default commissioning);
- ``field p%``: FD001 and the raw windows of a random p% of the feedback engines' windows, each with its context,
  as the devices upload them (a window of 5 readings + 64 before it).

    .venv/bin/python bench/regimes.py [--datasets DIR] [--seed 7] [--shares 0.002,0.01,0.05] [--json]

Prints a table, then (``--json``) one JSON object as the last line. About four minutes (ten fits).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.store.rows import RawWindowRow
from hub.training.regimes import FieldReadings, field_readings, learn_regimes
from infra.datasets import default_datasets_dir
from models.cmapss import CMAPSS_SENSORS, engine_windows, fit_cmapss, load_engines, split_engines
from models.regimes import DEFAULT_SETTINGS
from models.training import classification_metrics, positive_scores
from shared.features import REGIMES, WindowSpec
from shared.history import CONTEXT

WINDOW = WindowSpec(sensors=list(CMAPSS_SENSORS), size=5, step=1, feature_set_version=REGIMES)


def field_windows(engines: dict[int, np.ndarray], units: list[int], share: float, seed: int) -> list[RawWindowRow]:
    """The raw windows of a random `share` of each engine's windows, each with `CONTEXT` readings before it and the
    count before those: what the devices upload for their random slice (one gateway per engine, a cycle a second)."""
    rng = np.random.default_rng(seed)
    rows = []
    for unit in units:
        x = engines[unit]
        ends = np.arange(WINDOW.size - 1, len(x))
        for end in ends[rng.random(len(ends)) < share]:
            first = max(0, end - WINDOW.size - CONTEXT + 1)
            rows.append(RawWindowRow(
                trace_id=f"{unit}-{end}", device_id=f"gw-{unit}", state="stored", requested_ts=0.0, asks=1,
                received_ts=0.0, unit=str(unit), sensors=tuple(WINDOW.sensors),
                timestamps=tuple(float(t) for t in range(first, end + 1)),
                values=tuple(tuple(col) for col in x[first:end + 1].T.tolist()), service=int(first)))
    return rows


def run(datasets: Path, seed: int, shares: list[float]) -> list[dict[str, object]]:
    base = load_engines(datasets / "cmapss" / "train_FD001.txt")
    fleet = load_engines(datasets / "cmapss" / "train_FD002.txt")
    feedback, evaluation = split_engines(sorted(fleet), (0.5, 0.5), seed)
    base_series = [base[u] for u in sorted(base)]
    ways: list[tuple[str, FieldReadings]] = [
        ("base only", FieldReadings({}, 0, 0, 0)),
        ("commissioned", FieldReadings({("all", str(u)): fleet[u] for u in feedback}, len(feedback), 0,
                                       sum(len(fleet[u]) for u in feedback))),
        *((f"field {share:.1%}", field_readings(field_windows(fleet, feedback, share, seed), WINDOW.sensors))
          for share in shares),
    ]
    engines = {**{-u: r for u, r in base.items()}, **{u: fleet[u] for u in feedback}}
    rows = []
    for name, field in ways:
        stats = learn_regimes(field, base_series, WINDOW.sensors, DEFAULT_SETTINGS, min_readings=0, seed=seed)
        held_cache = engine_windows(fleet, evaluation, WINDOW, regimes=stats)
        for trained, pool in (("FD001 only", base), ("+ labels", engines)):
            started = time.monotonic()
            units = sorted(pool)
            fitted = fit_cmapss(pool, units, seed=seed, window=WINDOW, split=(0.8, 0.2, 0.0), regimes=stats)
            m = classification_metrics(held_cache.y, positive_scores(fitted.estimator, held_cache.X), fitted.threshold)
            wall = time.monotonic() - started
            rows.append({"stats": name, "trained": trained, "regimes": stats.n_regimes, "field_windows": field.windows,
                         "field_readings": field.readings, "f1": round(m["f1"], 3), "recall": round(m["recall"], 3),
                         "false_alarm_rate": round(m["false_alarm_rate"], 3), "wall_s": round(wall, 1)})
            print(f"  {name}, {trained}: F1 {m['f1']:.3f} ({wall:.0f} s)", file=sys.stderr, flush=True)
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
    print(f"{'stats':<14} {'trained on':<11} {'regimes':>7} {'windows':>8} {'field readings':>14} {'F1':>6} "
          f"{'recall':>7} {'FAR':>6} {'wall s':>7}")
    for r in rows:
        print(f"{r['stats']:<14} {r['trained']:<11} {r['regimes']:>7} {r['field_windows']:>8,} "
              f"{r['field_readings']:>14,} {r['f1']:>6.3f} {r['recall']:>7.3f} {r['false_alarm_rate']:>6.3f} "
              f"{r['wall_s']:>7}")
    if args.json:
        print(json.dumps({"seed": args.seed, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
