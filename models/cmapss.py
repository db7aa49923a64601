"""The C-MAPSS recipe: a failure model trained on NASA's turbofan run-to-failure files, as the initial one is.

Each engine of a ``train_FD00x.txt`` file runs until it fails at its last cycle, so a window ending at cycle
``c`` of an engine that lasts ``N`` cycles is labelled "fails within `horizon` cycles" when ``N - c <=
horizon`` (30 by default: the common C-MAPSS label). Windows come from `shared.features` over the 24 columns a
`agent.sources.replay.CmapssSource` replays (3 operating settings + 21 sensors), one engine at a time so no
window spans two engines. Engines (not windows) are split into train / validation (threshold) / holdout
(metrics and parity) by the seed; the rest is `models.initial`'s path: fit, F1-best threshold, skl2onnx,
parity (nothing is written otherwise), reference histograms from the training features, a version directory.

The manifest records the data as ``real`` (a public benchmark, not this project's simulator) and names it as
the base set ``cmapss:<file>`` (`BASE_SET_PARAM`), so that the hub's retrains replay the same base set
(`hub.training.base_sets`).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from infra.datasets import CMAPSS_SENSORS
from models.errors import TrainingError
from models.onnx_export import onnx_scores, onnx_session, parity_check, to_onnx_bytes
from models.reference import reference_from_features
from models.training import (
    Classifier,
    ParamValue,
    classification_metrics,
    model_params,
    positive_scores,
    select_threshold,
    train_classifier,
)
from models.version import build_manifest, check_new_version_dir, write_version
from shared.errors import SourceError
from shared.features import REGIMES, WindowSpec, series_features
from shared.manifest import ModelManifest
from shared.regimes import RegimeStats

log = logging.getLogger(__name__)

DEFAULT_HORIZON = 30  # cycles: "fails within the next 30 cycles"
# Five cycles (flights): short enough that an engine's first prediction comes early, and the "last" features
# still carry each cycle's own operating settings, which is what lets a retrained model tell the regimes apart.
DEFAULT_WINDOW = WindowSpec(sensors=list(CMAPSS_SENSORS), size=5, step=1)
SPLIT = (0.6, 0.2, 0.2)  # train / validation (threshold) / holdout (metrics and parity), by engine
CREATED_BY = "recipe:cmapss"
BASE_SET_PARAM = "base_set"
_WIDTH = 2 + len(CMAPSS_SENSORS)  # unit, cycle, then the replayed columns


def base_set_id(path: Path | str) -> str:
    """The name a retrain finds this data by: ``cmapss:<path>`` (a bare file name is looked up in the datasets
    folder's ``cmapss/``)."""
    return f"cmapss:{path}"


def load_engines(path: Path | str) -> dict[int, np.ndarray]:
    """Every engine of a C-MAPSS text file: id -> ``(cycles, 24)`` float64 readings in cycle order.

    Raises SourceError when the file is missing or is not C-MAPSS text (26 numeric columns).
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"C-MAPSS file {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an empty file: reported below
            rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise SourceError(f"{path} is not C-MAPSS text: {exc}") from None
    if rows.shape[0] == 0 or rows.shape[1] != _WIDTH:
        raise SourceError(f"{path} has {rows.shape[1] if rows.size else 0} columns; C-MAPSS text has {_WIDTH}")
    engines: dict[int, np.ndarray] = {}
    for unit in np.unique(rows[:, 0]).astype(int):
        mine = rows[rows[:, 0] == unit]
        engines[int(unit)] = mine[np.argsort(mine[:, 1], kind="stable"), 2:]
    return engines


@dataclass(frozen=True)
class EngineWindows:
    """Windows of some engines: features, labels, and which engine and cycle (1-based, the window's last) each
    came from."""

    X: np.ndarray  # float32 (n, features)
    y: np.ndarray  # int64 (n,)
    unit: np.ndarray  # int64 (n,)
    cycle: np.ndarray  # int64 (n,)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, units: Iterable[int]) -> EngineWindows:
        mask = np.isin(self.unit, np.fromiter(units, dtype=np.int64))
        return EngineWindows(self.X[mask], self.y[mask], self.unit[mask], self.cycle[mask])


def engine_windows(engines: Mapping[int, np.ndarray], units: Iterable[int], window: WindowSpec,
                   horizon: int = DEFAULT_HORIZON, regimes: RegimeStats | None = None) -> EngineWindows:
    """The windows an agent would emit for `units` (in that order), labelled by each engine's end of life.

    Feature set 2 needs the `regimes` statistics (`engine_regimes` fits them)."""
    columns = [CMAPSS_SENSORS.index(s) for s in window.sensors] if window.sensors != CMAPSS_SENSORS else None
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for unit in units:
        readings = engines[int(unit)]
        if columns is not None:
            readings = readings[:, columns]
        features, ends = series_features(readings, window, regimes)
        if not len(ends):
            continue
        cycles = ends + 1
        labels = (readings.shape[0] - cycles <= horizon).astype(np.int64)
        parts.append((features, labels, np.full(len(cycles), int(unit), np.int64), cycles))
    if not parts:
        return EngineWindows(np.empty((0, window.n_features), np.float32), np.empty(0, np.int64),
                             np.empty(0, np.int64), np.empty(0, np.int64))
    X, y, unit_ids, cycles = (np.concatenate(p) for p in zip(*parts, strict=True))
    return EngineWindows(X, y, unit_ids, cycles)


def engine_regimes(engines: Mapping[int, np.ndarray], units: Iterable[int], window: WindowSpec,
                   seed: int = 7) -> RegimeStats | None:
    """Feature set 2's regime statistics fitted on every reading of `units` (`models.regimes`); set 1: None."""
    if window.feature_set_version != REGIMES:
        return None
    from models.regimes import fit_regimes

    columns = [CMAPSS_SENSORS.index(s) for s in window.sensors]
    return fit_regimes((engines[int(u)][:, columns] for u in units), window.sensors, seed=seed)


def split_engines(units: Sequence[int], fractions: Sequence[float], seed: int) -> list[list[int]]:
    """`units` shuffled by `seed` and cut into consecutive parts of the given fractions (sorted within each)."""
    order = np.random.default_rng(seed).permutation(np.asarray(sorted(units), dtype=np.int64))
    bounds = np.round(np.cumsum(fractions) / np.sum(fractions) * len(order)).astype(int)
    parts, start = [], 0
    for end in bounds:
        parts.append(sorted(int(u) for u in order[start:end]))
        start = end
    return parts


@dataclass(frozen=True)
class FittedModel:
    """A fitted, converted and parity-checked model with the data it saw."""

    estimator: Classifier
    onnx_bytes: bytes
    threshold: float
    train: EngineWindows
    metrics: dict[str, float]  # on the holdout engines (the validation engines when there is no holdout)
    split: tuple[list[int], list[int], list[int]]
    regimes: RegimeStats | None = None  # feature set 2's statistics the features were computed with


def fit_cmapss(engines: Mapping[int, np.ndarray], units: Sequence[int], *, seed: int = 7,
               window: WindowSpec = DEFAULT_WINDOW, horizon: int = DEFAULT_HORIZON,
               split: Sequence[float] = SPLIT, family: str = "gbc",
               params: Mapping[str, ParamValue] | None = None, regimes: RegimeStats | None = None) -> FittedModel:
    """Fit on `units` split by engine, pick the F1-best threshold on validation, convert, and prove parity.

    A zero holdout fraction (e.g. an oracle judged elsewhere) measures and checks parity on validation. Feature
    set 2 uses `regimes`, by default fitted on the readings of the training and validation engines.
    """
    train_u, val_u, hold_u = split_engines(units, split, seed)
    if not train_u or not val_u:
        raise TrainingError(f"{len(units)} engines cannot be split {tuple(split)} into training and validation")
    if regimes is None:
        regimes = engine_regimes(engines, [*train_u, *val_u], window, seed)
    data = engine_windows(engines, [*train_u, *val_u, *hold_u], window, horizon, regimes)
    train, val = data.take(train_u), data.take(val_u)
    hold = data.take(hold_u) if hold_u else val
    started = time.perf_counter()
    estimator = train_classifier(train.X, train.y, seed=seed, family=family, params=params)
    log.info("fitted %s on %d windows of %d engines in %.1f s", family, len(train), len(train_u),
             time.perf_counter() - started)
    threshold = select_threshold(val.y, positive_scores(estimator, val.X))
    metrics = classification_metrics(hold.y, positive_scores(estimator, hold.X), threshold)
    onnx_bytes = to_onnx_bytes(estimator, window.n_features)
    parity = parity_check(estimator, onnx_bytes, hold.X, threshold)
    metrics["parity_max_abs_diff"] = parity.max_abs_diff
    metrics["parity_label_flips"] = float(parity.label_flips)
    return FittedModel(estimator, onnx_bytes, threshold, train, metrics, (train_u, val_u, hold_u), regimes)


def build_cmapss(
    out_dir: Path | str,
    *,
    path: Path | str,
    units: Iterable[int] | None = None,
    seed: int = 7,
    window: WindowSpec = DEFAULT_WINDOW,
    horizon: int = DEFAULT_HORIZON,
    split: Sequence[float] = SPLIT,
    version: str = "v1",
    family: str = "gbc",
    params: Mapping[str, ParamValue] | None = None,
    created: datetime | None = None,
    base_set: str | None = None,
    regimes: RegimeStats | None = None,
) -> ModelManifest:
    """Train on the engines of the C-MAPSS file `path` (all, or `units`) and write a new version to `out_dir`.

    `base_set` is what the manifest names as the base set retrains replay (default ``cmapss:<path>``). A window of
    feature set 2 normalises by `regimes` (default: fitted on the training and validation engines' readings),
    kept in the manifest.
    Same arguments, same ONNX bytes. Raises SourceError for a missing or malformed file, ParityError (and
    writes nothing) when ONNX and scikit-learn disagree, VersionExistsError when `out_dir` is taken.
    """
    started = time.perf_counter()
    check_new_version_dir(out_dir)
    engines = load_engines(path)
    chosen = sorted(engines) if units is None else sorted({int(u) for u in units})
    unknown = [u for u in chosen if u not in engines]
    if unknown:
        raise SourceError(f"{path} has no engine(s) {unknown[:5]}")
    fitted = fit_cmapss(engines, chosen, seed=seed, window=window, horizon=horizon, split=split, family=family,
                        params=params, regimes=regimes)
    m = fitted.metrics
    log.info("C-MAPSS %s: %d engines, holdout at threshold %.3f: f1 %.3f, recall %.3f, false alarms %.2f%%, "
             "auc %.3f; parity max |diff| %.2g", Path(path).name, len(chosen), fitted.threshold, m["f1"],
             m["recall"], 100.0 * m["false_alarm_rate"], m.get("roc_auc", float("nan")), m["parity_max_abs_diff"])
    train = fitted.train
    reference = reference_from_features(train.X, onnx_scores(onnx_session(fitted.onnx_bytes), train.X))
    train_u, val_u, hold_u = fitted.split
    base = base_set or base_set_id(path)
    recorded: dict[str, ParamValue] = {
        "family": family, **model_params(family, params), BASE_SET_PARAM: base, "horizon": horizon,
        "n_engines": len(chosen), "split": "/".join(str(f) for f in split), "n_train_engines": len(train_u),
        "n_validation_engines": len(val_u), "n_holdout_engines": len(hold_u),
    }
    manifest = build_manifest(
        version=version, onnx_bytes=fitted.onnx_bytes, family=family, window=window, threshold=fitted.threshold,
        reference=reference, X=train.X, y=train.y, seed=seed, data_kind="real", created_by=CREATED_BY,
        reason=f"C-MAPSS model from {Path(path).name} ({len(chosen)} engines, seed {seed})", metrics=m,
        sources=[f"{base} engines={len(chosen)} horizon={horizon} (NASA C-MAPSS, public run-to-failure data)"],
        params=recorded, created=created, regimes=fitted.regimes,
    )
    write_version(out_dir, fitted.onnx_bytes, manifest)
    log.info("wrote %s %s in %.1f s", version, out_dir, time.perf_counter() - started)
    return manifest
