"""Feature set 2's regime statistics learned from the field (issue 14), and the field's rows restated under them.

A retrain with ``TrainingSettings.regimes = "field"`` does not keep its parent's `RegimeStats`: it fits new ones
(`models.regimes.fit_regimes`) on the readings of the raw windows devices uploaded (`field_readings`) together with
the base set's readings, so the base set's own regimes stay represented (`learn_regimes`). A stored feature vector
cannot be re-normalised, so every labelled field row is recomputed from its trace's raw window, which carries
`shared.history.CONTEXT` readings before the window and the count of those before them (`restate_feedback`,
`shared.features.context_features`); a row without such a window is dropped and counted. The incumbent keeps the
features it was scored with (`Restatement.as_scored`), so the gate compares each model on its own features of the
same rows.

Pure: raw window rows and label rows in, statistics and rows out; reading them from the store is
`hub.training.service.loading`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hub.store.rows import RawWindowRow
from hub.training.dataset import Feedback
from hub.training.errors import RetrainError
from shared.features import REGIMES, WindowSpec, context_features
from shared.manifest import ModelManifest
from shared.regimes import RegimeStats

NO_RAW_WINDOW = "field_no_raw_window"
"""The count (in a retrain's counts) of labelled field rows dropped because no raw window could restate them."""
OTHER_INPUTS = "field_other_inputs"
"""The count of labelled field rows dropped because a version with other inputs scored them and no raw window could
restate them as the parent's (`as_parent_scored`)."""


@dataclass(frozen=True)
class FieldReadings:
    """The field's raw readings, one series per (device, unit): de-duplicated by timestamp, oldest first, columns in
    the model window's sensor order; with how many devices and windows they came from."""

    series: dict[tuple[str, str], np.ndarray]
    devices: int
    windows: int
    readings: int


@dataclass(frozen=True)
class FieldRegimes:
    """Regime statistics a retrain learned from the field, what they were learned from, and the raw windows read
    (by trace id: `restate_feedback` uses them before asking the store for others)."""

    stats: RegimeStats
    devices: int
    windows: int
    readings: int
    base_readings: int
    raw_windows: Mapping[str, RawWindowRow] = field(default_factory=dict)


@dataclass(frozen=True)
class Restatement:
    """How many labelled field rows were restated under new statistics and how many dropped, and each kept row's
    features as the incumbent scored them (by trace id)."""

    restated: int
    dropped: int
    as_scored: dict[str, np.ndarray]


def window_readings(row: RawWindowRow, sensors: Sequence[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """A stored raw window's timestamps and readings ``(time, len(sensors))`` in `sensors` order, oldest first;
    None when it lacks one of `sensors`, its lists disagree in length, or a reading is not finite."""
    if row.state != "stored" or not row.timestamps or any(s not in row.sensors for s in sensors):
        return None
    n = len(row.timestamps)
    if len(row.values) != len(row.sensors) or any(len(v) != n for v in row.values):
        return None
    index = {name: i for i, name in enumerate(row.sensors)}
    readings = np.array([row.values[index[s]] for s in sensors], dtype=np.float64).T.reshape(n, len(sensors))
    ts = np.asarray(row.timestamps, dtype=np.float64)
    if not (np.isfinite(readings).all() and np.isfinite(ts).all()):
        return None
    order = np.argsort(ts, kind="stable")
    return ts[order], readings[order]


def field_readings(rows: Iterable[RawWindowRow], sensors: Sequence[str]) -> FieldReadings:
    """The readings of the stored raw windows among `rows` that hold every one of `sensors`, per (device, unit).

    Overlapping windows of one unit share readings: each timestamp counts once (the first row's reading, i.e.
    the newest window's when `rows` come newest first). A window without a unit is its device's unnamed unit."""
    times: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    values: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    windows = 0
    for row in rows:
        got = window_readings(row, sensors)
        if got is None:
            continue
        key = (row.device_id, row.unit or "")
        times[key].append(got[0])
        values[key].append(got[1])
        windows += 1
    series = {}
    for key in sorted(times):
        ts = np.concatenate(times[key])
        _, first = np.unique(ts, return_index=True)  # sorted unique timestamps, each at its first occurrence
        series[key] = np.concatenate(values[key])[first]
    return FieldReadings(series, devices=len({d for d, _ in series}), windows=windows,
                         readings=sum(len(s) for s in series.values()))


def learn_regimes(field_data: FieldReadings, base: Sequence[np.ndarray], sensors: Sequence[str],
                  settings: Sequence[str], *, min_readings: int, seed: int) -> RegimeStats:
    """Regime statistics over the field's readings and the base set's (`base`, each ``(time, len(sensors))``),
    k-means over the operating `settings` (`models.regimes.fit_regimes`). RetrainError when the field gives fewer
    than `min_readings` readings: a handful of windows would let the base set alone decide the regimes."""
    from models.errors import TrainingError
    from models.regimes import fit_regimes  # scikit-learn: only when a retrain learns regimes

    if field_data.readings < min_readings:
        raise RetrainError(
            f"regimes from the field need at least {min_readings} field readings of the window's sensors; the stored "
            f"raw windows give {field_data.readings} ({field_data.windows} windows from {field_data.devices} "
            "devices): ask devices for more raw windows, or retrain with the parent's regimes")
    try:
        return fit_regimes([*field_data.series.values(), *base], sensors, settings=settings, seed=seed)
    except TrainingError as exc:
        raise RetrainError(f"regimes from the field could not be fitted: {exc}") from None


def restate_feedback(feedback: Feedback, windows: Mapping[str, RawWindowRow], spec: WindowSpec,
                     stats: RegimeStats) -> tuple[Feedback, Restatement]:
    """The field rows of `feedback` with features recomputed under `stats` from their traces' raw `windows`
    (`shared.features.context_features`); a row whose trace has no stored window with its history count
    (``service``) and at least ``spec.size`` readings of the window's sensors is dropped and counted
    (`NO_RAW_WINDOW`). The kept rows' old features are returned by trace id: the incumbent's inputs."""
    rows = feedback.rows
    keep = np.zeros(len(rows), bool)
    X = np.empty((len(rows), spec.n_features), np.float32)
    for i, trace in enumerate(rows.trace_id.tolist()):
        features = restated_features(windows.get(trace), spec, stats)
        if features is not None:
            keep[i], X[i] = True, features
    as_scored = {str(t): rows.X[i] for i, t in enumerate(rows.trace_id.tolist()) if keep[i]}
    dropped = int((~keep).sum())
    kept = feedback.take(keep, X[keep], **{NO_RAW_WINDOW: dropped})
    return kept, Restatement(restated=int(keep.sum()), dropped=dropped, as_scored=as_scored)


def as_parent_scored(feedback: Feedback, same_inputs: np.ndarray, windows: Mapping[str, RawWindowRow],
                     parent: ModelManifest) -> Feedback:
    """The field rows as `parent` would have scored them. A row scored by a version with other inputs (another
    window, or other regime statistics: a version before or after regimes learned from the field; `same_inputs`
    False) is restated under the parent's statistics from its trace's raw window, or dropped and counted
    (`OTHER_INPUTS`): features computed under other statistics are another model's inputs, though as wide."""
    keep = same_inputs.copy()
    X = feedback.rows.X.copy()
    if parent.regimes is not None and parent.window.feature_set_version == REGIMES:
        for i in np.flatnonzero(~same_inputs):
            features = restated_features(windows.get(str(feedback.rows.trace_id[i])), parent.window, parent.regimes)
            if features is not None:
                keep[i], X[i] = True, features
    return feedback.take(keep, X[keep], **{OTHER_INPUTS: int((~keep).sum())})


def restated_features(row: RawWindowRow | None, spec: WindowSpec, stats: RegimeStats) -> np.ndarray | None:
    """One trace's features under `stats` from its raw window (float32), or None when the window cannot give them
    (absent, no ``service`` count, fewer than ``spec.size`` readings, a sensor missing)."""
    if row is None or row.service is None:
        return None
    got = window_readings(row, spec.sensors)
    if got is None or got[1].shape[0] < spec.size:
        return None
    return np.asarray(context_features(got[1], spec, stats, row.service), dtype=np.float32)


# --- the field against the active statistics (`fleetloop hub regimes`) --------------------------------------------

FAR_SPREADS = 4.0
"""A field reading is far from the active regimes when its scaled distance (`RegimeStats.scale`) to the nearest
active centroid is more than this many times that regime's own spread of the settings (the readings it was fitted
on): the sign that the field runs in regimes the model has not seen."""
MIN_SPREAD = 1e-6  # scaled: a regime whose settings never moved still allows rounding


@dataclass(frozen=True)
class RegimeComparison:
    """The active version's regime statistics beside what the field's raw windows give: the field's readings per
    active regime, how many are far from every active centroid (`FAR_SPREADS`), and the regimes k-means finds in
    the field's readings alone (`found`; None without field readings)."""

    version: str
    active: RegimeStats
    devices: int
    windows: int
    readings: int
    per_active: list[int]
    far_per_active: list[int]
    found: RegimeStats | None

    @property
    def far_share(self) -> float | None:
        """The share of field readings far from every active centroid; None without field readings."""
        return sum(self.far_per_active) / self.readings if self.readings else None

    def to_dict(self) -> dict[str, object]:
        """JSON-safe, for the API and ``--json``."""
        a = self.active
        return {
            "version": self.version, "settings": list(a.settings), "far_spreads": FAR_SPREADS,
            "field": {"devices": self.devices, "windows": self.windows, "readings": self.readings,
                      "far_share": self.far_share},
            "active": [{"centroid": c, "fitted_readings": n, "field_readings": f, "field_far": far}
                       for c, n, f, far in zip(a.centroids, a.counts, self.per_active, self.far_per_active,
                                               strict=True)],
            "found": None if self.found is None else [
                {"centroid": c, "field_readings": n} for c, n in zip(self.found.centroids, self.found.counts,
                                                                     strict=True)],
        }


def compare_regimes(version: str, active: RegimeStats, field_data: FieldReadings, sensors: Sequence[str],
                    found: RegimeStats | None) -> RegimeComparison:
    """Each field reading's nearest active regime and whether it is far from it (`FAR_SPREADS` times the regime's
    scaled spread of its settings, from the active statistics' own per-regime std of those sensors)."""
    columns = [list(sensors).index(s) for s in active.settings]
    scale = np.asarray(active.scale, dtype=np.float64)
    centroids = np.asarray(active.centroids, dtype=np.float64) / scale
    spread = np.sqrt(((np.asarray(active.std, dtype=np.float64)[:, columns] / scale) ** 2).sum(axis=1))
    limit = FAR_SPREADS * np.maximum(spread, MIN_SPREAD)
    per_active = np.zeros(active.n_regimes, np.int64)
    far = np.zeros(active.n_regimes, np.int64)
    for series in field_data.series.values():
        settings = series[:, columns] / scale
        distance = np.sqrt(((settings[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2))
        nearest = np.argmin(distance, axis=1)
        per_active += np.bincount(nearest, minlength=active.n_regimes)
        far += np.bincount(nearest[distance[np.arange(len(nearest)), nearest] > limit[nearest]],
                           minlength=active.n_regimes)
    return RegimeComparison(version, active, field_data.devices, field_data.windows, field_data.readings,
                            per_active.tolist(), far.tolist(), found)
