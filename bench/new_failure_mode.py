"""The new-failure-mode scenario offline: the loop's retrain against an oracle's, F1 on the affected machines.

The fleet is the fast demo's (``fleetloop demo --fast --scenario new-failure-mode``): 4 devices dealt into the
three cohorts (`fleetloop.fleet.plan_fleet`, seed ``--seed``), the 3 of site-a getting `sim.drift.NewFailureMode` at
reading ``--start`` (3,600). Feedback covers readings up to ``--feedback`` (7,200: the demo's label phase); the test
period is the next ``--test`` readings (40,000, ~40 failures a machine) of the same machines. Three models, each at its
own threshold, scored on the test period's windows of the affected machines:

- ``v1``: the fast initial recipe (30 machines × 2,500 readings, seed 7), as the demo ships it;
- ``loop``: what the hub's retrain fits (`hub.training.dataset.base_rows`: the parent recipe's simulated base set,
  each row weight 1; field rows weight ``feedback_weight`` 2 × the label's confidence; the threshold picked on the
  validation rows, simulated and field) on the labels the on-site maintenance log gives (`sim.maintenance`: every
  failure's last 100 readings, one in 20 never logged, ends off by up to 10 readings, inspections vouching for the
  time since the machine's last entry, one in 20 over a wearing machine wrong) — the queue's 1-3 % are left out;
- ``oracle``: the same fit with every window of the feedback machines up to ``--feedback`` labelled from the truth.

``--field-min-share`` repeats the loop's and the oracle's fits with the base set scaled down until the field holds
that share of the weight (`hub.training.weighting`; off in the product). F1, recall and false-alarm rate are over
every test window of the affected machines (positive when the machine fails within 100 readings of the window's end).

    .venv/bin/python bench/new_failure_mode.py [--seeds 1,2,3] [--field-min-share 0.5] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from fleetloop.fleet import plan_fleet  # noqa: E402
from hub.training.dataset import SimSpec, base_rows  # noqa: E402
from hub.training.settings import TrainingSettings  # noqa: E402
from hub.training.weighting import base_scale  # noqa: E402
from models.initial import build_initial  # noqa: E402
from models.training import classification_metrics, positive_scores, select_threshold, train_classifier  # noqa: E402
from models.version import read_version  # noqa: E402
from shared.features import WindowSpec, extract, sliding_windows  # noqa: E402
from sim.drift import NewFailureMode  # noqa: E402
from sim.machine import SENSORS, SimulatedMachine  # noqa: E402
from sim.maintenance import MaintenanceLog  # noqa: E402
from sim.technicians import SimDevice  # noqa: E402

HORIZON = 100
FAST_RECIPE = (30, 2500)  # fleetloop.story.session: the demo's --fast initial model
MODEL_SEED = 7


def windows_of(device: SimDevice, spec: WindowSpec, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, window-end steps and truth (fails within HORIZON) of `device`'s first `steps` readings."""
    machine = SimulatedMachine(device.device_id, device.seed, device.config)
    for drift in device.drifts:
        machine.inject(drift)
    trace = machine.run(steps)
    columns = [SENSORS.index(s) for s in spec.sensors]
    w = sliding_windows(trace.values[:, columns], spec)
    ends = np.arange(w.shape[0], dtype=np.int64) * spec.step + spec.size - 1
    return extract(w), ends, (trace.rul[ends] <= HORIZON).astype(np.int64)


def log_labels(devices: dict[str, SimDevice], ends: dict[str, np.ndarray], upto: int,
               seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per device: (mask of labelled windows, label, weight) from the maintenance log's entries up to `upto`
    (a window is labelled by the entry whose range holds its last reading; one held by both kinds is left out)."""
    log = MaintenanceLog("tech-on-site", fleet=dict(devices), horizon=HORIZON, seed=seed, delay_s=0.0)
    notes = log.report(now=max(d.ts_of(upto) for d in devices.values()))
    out = {}
    for device_id, e in ends.items():
        device = devices[device_id]
        ts = device.start_ts + e * device.period
        fault, healthy = np.zeros(len(e), bool), np.zeros(len(e), bool)
        weight = np.zeros(len(e))
        for n in (n for n in notes if n.device_id == device_id):
            inside = (ts >= n.start_ts) & (ts <= n.end_ts) & (e < upto)
            (fault if n.label == "fault" else healthy)[inside] = True
            weight[inside] = n.confidence
        labelled = fault ^ healthy
        out[device_id] = (labelled, fault.astype(np.int64), weight)
    return out


def fit(base: Any, X: np.ndarray, y: np.ndarray, w: np.ndarray, settings: TrainingSettings, *,
        min_share: float, seed: int) -> tuple[Any, float]:
    """The retrain's fit: base rows + field rows (20 % of them validation), threshold on the validation rows."""
    val_field = np.random.default_rng(seed).random(len(y)) < settings.validation_fraction
    scale = base_scale(float(base.weight.sum()), float(w[~val_field].sum()), min_share)
    Xa = np.concatenate([base.X, X])
    ya = np.concatenate([base.y, y])
    wa = np.concatenate([base.weight * scale, w])
    val = np.concatenate([base.validation, val_field])
    est = train_classifier(Xa[~val], ya[~val], seed=settings.seed, sample_weight=wa[~val], family=settings.family,
                           params=settings.params)
    return est, select_threshold(ya[val], positive_scores(est, Xa[val]))


def rates(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    m = classification_metrics(y, scores, threshold)
    return {k: round(float(m[k]), 4) for k in ("f1", "recall", "false_alarm_rate")}


def run_seed(seed: int, v1: Any, base: Any, args: argparse.Namespace) -> dict[str, Any]:
    fault = NewFailureMode(start_t=args.start)
    specs = plan_fleet(4, seed, drift=lambda s: (fault,) if s.machine.site == "site-a" else ())
    devices = {s.device_id: SimDevice(s.device_id, s.seed, s.machine, s.drifts, start_ts=0.0, rate=400.0)
               for s in specs}
    affected = [d for d, dev in devices.items() if dev.drifts]
    spec = v1.window
    total = args.feedback + args.test
    data = {d: windows_of(dev, spec, total) for d, dev in devices.items()}
    feedback = {d: ends < args.feedback for d, (_, ends, _) in data.items()}
    test = {d: (ends - spec.size + 1) >= args.feedback for d, (_, ends, _) in data.items()}
    labels = log_labels(devices, {d: data[d][1] for d in devices}, args.feedback, seed)
    settings = TrainingSettings()

    def stack(part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xs, ys, ws = [], [], []
        for d, (X, _, truth) in data.items():
            if part == "loop":
                mask, y, w = labels[d]
                mask = mask & feedback[d]
                xs.append(X[mask])
                ys.append(y[mask])
                ws.append(settings.feedback_weight * w[mask])
            else:
                mask = feedback[d]
                xs.append(X[mask])
                ys.append(truth[mask])
                ws.append(np.full(int(mask.sum()), settings.feedback_weight))
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)

    Xt = np.concatenate([data[d][0][test[d]] for d in affected])
    yt = np.concatenate([data[d][2][test[d]] for d in affected])
    out: dict[str, Any] = {"seed": seed, "affected": affected, "test_windows": len(yt), "test_failing": int(yt.sum())}
    sess_scores = positive_scores_onnx(v1, Xt)
    out["v1"] = rates(yt, sess_scores, v1.threshold)
    Xl, yl, wl = stack("loop")
    Xo, yo, wo = stack("oracle")
    out["loop_labels"], out["oracle_labels"] = len(yl), len(yo)
    for name, (X, y, w), share in (("loop", (Xl, yl, wl), 0.0), ("oracle", (Xo, yo, wo), 0.0),
                                   ("loop_share", (Xl, yl, wl), args.field_min_share),
                                   ("oracle_share", (Xo, yo, wo), args.field_min_share)):
        est, threshold = fit(base, X, y, w, settings, min_share=share, seed=seed)
        out[name] = rates(yt, positive_scores(est, Xt), threshold)
    return out


def positive_scores_onnx(v1: Any, X: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(v1.path / "model.onnx"), providers=["CPUExecutionProvider"])
    probs = sess.run([v1.output_name], {v1.input_name: X.astype(np.float32)})[0]
    return np.asarray(probs)[:, 1]


class _V1:
    def __init__(self, path: Path) -> None:
        manifest, _ = read_version(path)
        self.path, self.window, self.threshold = path, manifest.window, manifest.threshold
        self.input_name, self.output_name = manifest.input_name, manifest.output_name
        self.params = manifest.training.params


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1,2,3", help="fleet seeds (the demo's --seed), comma-separated")
    parser.add_argument("--start", type=int, default=3600)
    parser.add_argument("--feedback", type=int, default=7200)
    parser.add_argument("--test", type=int, default=40_000)
    parser.add_argument("--field-min-share", type=float, default=0.5)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fleetloop-bench-newmode"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    path = args.workdir / "v1"
    if not (path / "manifest.json").is_file():
        build_initial(path, seed=MODEL_SEED, version="v1", n_machines=FAST_RECIPE[0], steps=FAST_RECIPE[1])
    v1 = _V1(path)
    settings = TrainingSettings()
    spec = SimSpec(n_machines=FAST_RECIPE[0], steps=FAST_RECIPE[1], horizon=HORIZON, seed=MODEL_SEED)
    base = base_rows(spec, v1.window, weight=settings.sim_weight, validation_fraction=settings.validation_fraction,
                     seed=settings.seed)
    results = [run_seed(int(s), v1, base, args) for s in args.seeds.split(",")]
    names = ("v1", "loop", "oracle", "loop_share", "oracle_share")
    print(f"{'seed':>4} {'labels loop/oracle':>19} " + " ".join(f"{n + ' F1 (rec/FAR)':>24}" for n in names))
    for r in results:
        cells = " ".join(f"{r[n]['f1']:>8.3f} ({r[n]['recall']:.3f}/{r[n]['false_alarm_rate']:.3f})" for n in names)
        print(f"{r['seed']:>4} {r['loop_labels']:>9}/{r['oracle_labels']:<9} {cells}")
    mean = {n: round(float(np.mean([r[n]["f1"] for r in results])), 4) for n in names}
    gap = round(mean["oracle"] - mean["loop"], 4)
    gap_share = round(mean["oracle_share"] - mean["loop_share"], 4)
    print("mean F1: " + ", ".join(f"{n} {v:.3f}" for n, v in mean.items()) + f"; oracle - loop {gap:+.3f} "
          f"(field share {args.field_min_share:g}: {gap_share:+.3f}; {time.perf_counter() - started:.0f} s)")
    if args.json:
        print(json.dumps({"results": results, "mean_f1": mean, "oracle_minus_loop": gap,
                          "oracle_minus_loop_field_share": gap_share,
                          "field_min_share": args.field_min_share}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
