"""The initial model: a seeded, reproducible recipe trained on the simulator before any field labels exist.

Simulate a fleet, split it by machine into train / validation / holdout, fit, pick the F1-best threshold on
validation, convert to ONNX, prove parity on the holdout (nothing is written otherwise), take the drift
reference from the training features, and write the version.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from models.onnx_export import onnx_scores, onnx_session, parity_check, to_onnx_bytes
from models.reference import reference_from_features
from models.training import (
    ParamValue,
    classification_metrics,
    cohort_metrics,
    model_params,
    positive_scores,
    select_threshold,
    train_classifier,
)
from models.version import build_manifest, check_new_version_dir, write_version
from shared.features import WindowSpec
from shared.manifest import ModelManifest
from sim.dataset import simulate_windows, split_by_machine
from sim.machine import SENSORS

log = logging.getLogger(__name__)

DEFAULT_WINDOW = WindowSpec(sensors=list(SENSORS), size=30, step=5)
DEFAULT_HORIZON = 100  # steps (readings): "fails within the next 100 readings"
DEFAULT_N_MACHINES = 60
DEFAULT_STEPS = 3000
SPLIT = (0.6, 0.2, 0.2)  # train / validation (threshold) / holdout (metrics and parity), by machine
CREATED_BY = "recipe:initial"


def build_initial(
    out_dir: Path | str,
    *,
    seed: int = 7,
    n_machines: int = DEFAULT_N_MACHINES,
    steps: int = DEFAULT_STEPS,
    horizon: int = DEFAULT_HORIZON,
    window: WindowSpec = DEFAULT_WINDOW,
    version: str = "v1",
    family: str = "gbc",
    params: Mapping[str, ParamValue] | None = None,
    created: datetime | None = None,
) -> ModelManifest:
    """Build the initial model version into the new directory `out_dir` and return its manifest.

    The same arguments give the same ONNX bytes and metrics. Raises ParityError (and writes nothing)
    when ONNX and scikit-learn disagree on the holdout, VersionExistsError when `out_dir` is taken.
    """
    started = time.perf_counter()
    check_new_version_dir(out_dir)

    ds = simulate_windows(n_machines, steps, seed, window, horizon)
    train, val, hold = split_by_machine(ds, SPLIT, seed=seed)
    log.info(
        "simulated %d machines x %d steps: %d windows (%.1f%% positive); train/val/holdout rows %d/%d/%d",
        n_machines, steps, len(ds), 100.0 * ds.y.mean(), len(train), len(val), len(hold),
    )  # fmt: skip

    fit_started = time.perf_counter()
    estimator = train_classifier(train.X, train.y, seed=seed, family=family, params=params)
    log.info("fitted %s on %d rows in %.1fs", family, len(train), time.perf_counter() - fit_started)

    threshold = select_threshold(val.y, positive_scores(estimator, val.X))
    hold_scores = positive_scores(estimator, hold.X)
    metrics = classification_metrics(hold.y, hold_scores, threshold)
    by_cohort = cohort_metrics(hold.y, hold_scores, threshold, hold.cohort)
    log.info(
        "holdout at threshold %.3f: f1 %.3f, recall %.3f, precision %.3f, false alarms %.2f%%, auc %.3f",
        threshold, metrics["f1"], metrics["recall"], metrics["precision"],
        100.0 * metrics["false_alarm_rate"], metrics.get("roc_auc", float("nan")),
    )  # fmt: skip

    onnx_bytes = to_onnx_bytes(estimator, window.n_features)
    parity = parity_check(estimator, onnx_bytes, hold.X, threshold)
    log.info(
        "ONNX parity on %d holdout rows: max |diff| %.2g, %d flips",
        parity.n, parity.max_abs_diff, parity.label_flips,
    )  # fmt: skip
    metrics["parity_max_abs_diff"] = parity.max_abs_diff
    metrics["parity_label_flips"] = float(parity.label_flips)

    # The reference scores are what agents will histogram: the ONNX model's.
    reference = reference_from_features(train.X, onnx_scores(onnx_session(onnx_bytes), train.X))
    recorded: dict[str, ParamValue] = {
        "family": family,
        **model_params(family, params),
        "horizon": horizon,
        "n_machines": n_machines,
        "steps": steps,
        "split": "/".join(str(f) for f in SPLIT),
        "n_validation": len(val),
        "n_holdout": len(hold),
    }
    manifest = build_manifest(
        version=version,
        onnx_bytes=onnx_bytes,
        family=family,
        window=window,
        threshold=threshold,
        reference=reference,
        X=train.X,
        y=train.y,
        seed=seed,
        data_kind="simulated",
        created_by=CREATED_BY,
        reason=f"initial model from the simulator (seed {seed})",
        metrics=metrics,
        cohort_metrics=by_cohort,
        sources=[f"sim:n_machines={n_machines},steps={steps},seed={seed}"],
        params=recorded,
        created=created,
    )
    write_version(out_dir, onnx_bytes, manifest)
    log.info("wrote %s %s in %.1fs", version, out_dir, time.perf_counter() - started)
    return manifest
