"""The drift job: reads stats from the store, runs the pure drift statistics, stores and publishes the reports.

One `DriftService.run(now)` evaluates the window ``[now - window_s, now)``. Stats are grouped by model
version, because counts are only comparable over one manifest's bin edges; each version gets its own
fleet, cohort and device reports against that manifest's reference, with scopes such as ``fleet@v1``,
``cohort:site-a/pump@v1`` and ``device:dev-3@v1``. Stats that cannot be compared (no model version, an
unknown version, bins that do not match the manifest) are skipped with a logged reason, never fatal.

The window is read in slices of `read_chunk_s` and folded into one running sum per device and version as
it goes, so memory stays bounded by one slice however long the window: a day of per-minute stats from
1,000 devices is 1.44 million rows. All statistics live in `hub.drift`; this module only does the I/O.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from hub.app.settings import DriftSettings
from hub.drift import DriftReport, Sketch, fleet_reports
from hub.registry.references import ManifestSource
from hub.store.ports import HubStore
from hub.store.rows import Device, StatsRow
from shared.manifest import ModelManifest
from shared.messages import Stats

if TYPE_CHECKING:
    from hub.app.metrics import HubMetrics

log = logging.getLogger(__name__)

TOP_FEATURES = 3  # drifted features shown per scope by `format_table`
READ_CHUNK_S = 600.0  # stats read per store query: 10 minutes of the fleet's rows


@dataclass(frozen=True)
class Skipped:
    """Stats rows a run could not use, and why (one entry per model version and reason)."""

    model_version: str | None
    rows: int
    reason: str


class DriftService:
    """Evaluates drift over the store's recent stats; `run(now)` stores every report and returns them as dicts.

    Thread-safe as long as the store is; `last_skipped` describes the most recent run only.
    """

    def __init__(
        self,
        store: HubStore,
        references: ManifestSource,
        settings: DriftSettings,
        *,
        metrics: HubMetrics | None = None,
        read_chunk_s: float = READ_CHUNK_S,
    ) -> None:
        if read_chunk_s <= 0:
            raise ValueError("read_chunk_s must be positive")
        self.store = store
        self.references = references
        self.settings = settings
        self.metrics = metrics
        self.read_chunk_s = read_chunk_s
        self.last_skipped: list[Skipped] = []

    def run(self, now: float) -> list[dict[str, Any]]:
        """Reports for ``[now - window_s, now)``, per model version: fleet, cohorts, devices; each one stored.

        A ``drift`` verdict also records a ``drift_detected`` event (atomically, in the store). Returns the
        stored reports (``DriftReport.to_dict()`` plus ``model_version``, ``window_start``, ``window_end``
        and ``report_id``), ordered by model version, then fleet, cohorts and devices.
        """
        start = now - self.settings.window_s
        folds: dict[str, StatsFold] = {}
        unknown: Counter[str] = Counter()
        unversioned = n_rows = 0
        for a, b in _slices(start, now, self.read_chunk_s):
            for row in self.store.stats_between(a, b):
                n_rows += 1
                version = row.model_version
                if version is None:
                    unversioned += 1
                    continue
                fold = folds.get(version)
                if fold is None and version not in unknown:
                    manifest = self.references.manifest(version)
                    if manifest is not None:
                        fold = folds[version] = StatsFold(manifest)
                if fold is None:
                    unknown[version] += 1
                else:
                    fold.add(row)

        skipped: list[Skipped] = []
        if unversioned:
            skipped.append(Skipped(None, unversioned, "stats without a model version: their bins are unknown"))
        cohorts = cohort_map(self.store.devices()) if folds else {}
        out: list[dict[str, Any]] = []
        for version in sorted({*folds, *unknown}):
            if version in unknown:
                skipped.append(Skipped(version, unknown[version], f"unknown model version {version!r}: no manifest"))
                continue
            fold = folds[version]
            sketches, bad = fold.sketches()
            skipped.extend(bad)
            if not sketches:
                continue
            try:
                reports = self._reports(fold.manifest, sketches, cohorts)
            except ValueError as exc:  # SketchShapeError included: a manifest the statistics cannot use
                skipped.append(Skipped(version, fold.rows, f"drift statistics failed: {exc}"))
                continue
            for report in reports:
                out.append(self._save(report, version, start, now))

        for s in skipped:
            log.warning("drift: skipped %d stats row(s) of model version %s: %s", s.rows, s.model_version, s.reason)
        self.last_skipped = skipped
        log.info("drift: %d report(s) over [%.0f, %.0f) from %d stats row(s); %d drift verdict(s)", len(out), start,
                 now, n_rows, sum(1 for r in out if r["verdict"] == "drift"))
        return out

    def _reports(
        self, manifest: ModelManifest, sketches: Mapping[str, Sketch], cohorts: Mapping[str, str]
    ) -> list[DriftReport]:
        s = self.settings
        reports = fleet_reports(
            Sketch.from_reference(manifest.reference),
            sketches,
            {device: cohorts[device] for device in sketches if device in cohorts},
            manifest.feature_names,
            min_samples=s.min_samples,
            alpha=s.alpha,
            psi_threshold=s.psi_threshold,
            test=s.test,
        )
        return [dataclasses.replace(r, scope=f"{r.scope}@{manifest.version}") for r in reports]

    def _save(self, report: DriftReport, version: str, start: float, now: float) -> dict[str, Any]:
        data = report.to_dict()
        data.update(model_version=version, window_start=start, window_end=now)
        data["report_id"] = self.store.save_drift_report(data, report.scope, report.verdict, now)
        if self.metrics is not None and not report.scope.startswith("device:"):
            self.metrics.set_drift_report(data)  # fleet and cohorts only: one series per device would explode
        return data


def cohort_of(device: Device) -> str | None:
    """A device's cohort: its explicit cohort, else ``site/asset_type`` (either alone if the other is unknown).

    The registry reports an unset cohort as the site, so an explicit cohort equal to the site reads as unset.
    """
    if device.cohort is not None and device.cohort != device.site:
        return device.cohort
    parts = [p for p in (device.site, device.asset_type) if p]
    return "/".join(parts) or None


def cohort_map(devices: Iterable[Device]) -> dict[str, str]:
    """Device id → cohort for the devices that have one."""
    return {d.device_id: c for d in devices if (c := cohort_of(d)) is not None}


class StatsFold:
    """Running per-device sums of one model version's stats rows, over its manifest's bins.

    `add` checks each row's shape against the manifest (a row of another shape is counted and skipped)
    and adds its counts; `sketches` turns each device's sum into a `Sketch` through `Sketch.from_stats`.
    Summing first and building one sketch per device is the cheap way to merge a day of per-minute stats.
    """

    def __init__(self, manifest: ModelManifest) -> None:
        self.manifest = manifest
        ref = manifest.reference
        self.bins = [len(edges) + 1 for edges in ref.bin_edges]
        self.score_bins = len(ref.score_bin_edges) + 1
        self._width = sum(self.bins)
        self._sums: dict[str, _DeviceSum] = {}
        self._bad = 0
        self._bad_example: StatsRow | None = None
        self.rows = 0

    def add(self, row: StatsRow) -> None:
        self.rows += 1
        if len(row.score_hist) != self.score_bins or [len(h) for h in row.feature_hist] != self.bins:
            self._bad += 1
            self._bad_example = self._bad_example or row
            return
        total = self._sums.get(row.device_id)
        if total is None:
            total = self._sums[row.device_id] = _DeviceSum(row, np.zeros(self._width, np.int64),
                                                           np.zeros(self.score_bins, np.int64))
        total.add(row, np.fromiter(itertools.chain.from_iterable(row.feature_hist), np.int64, self._width))

    def sketches(self) -> tuple[dict[str, Sketch], list[Skipped]]:
        """Device id → its merged sketch, and what was skipped (summarised, with the first reason)."""
        version = self.manifest.version
        skipped = []
        if self._bad_example is not None:
            reason = f"bins do not match the manifest, e.g. {self._why(self._bad_example)}"
            skipped.append(Skipped(version, self._bad, reason))
        offsets = list(itertools.accumulate(self.bins, initial=0))
        out: dict[str, Sketch] = {}
        for device, total in sorted(self._sums.items()):
            try:
                out[device] = Sketch.from_stats(total.stats(offsets), self.manifest.reference)
            except ValueError as exc:  # counts a sketch refuses (the store never holds them)
                skipped.append(Skipped(version, total.rows, f"device {device}: {exc}"))
        return out, skipped

    def _why(self, row: StatsRow) -> str:
        """What `Sketch.from_stats` says about a row of the wrong shape."""
        bins = [len(h) for h in row.feature_hist]
        flat = np.fromiter(itertools.chain.from_iterable(row.feature_hist), np.int64, sum(bins))
        example = _DeviceSum(row, flat, np.asarray(row.score_hist, dtype=np.int64))
        try:
            Sketch.from_stats(example.stats(list(itertools.accumulate(bins, initial=0))), self.manifest.reference)
        except ValueError as exc:
            return str(exc)
        return "unknown"  # pragma: no cover - only rows that failed the shape check get here


@dataclass
class _DeviceSum:
    """One device's counts so far (feature bins flattened), started from its first row."""

    first: StatsRow
    feature: NDArray[np.int64]
    score: NDArray[np.int64]
    rows: int = 0
    windows: int = 0
    anomalies: int = 0
    period_start: float = math.inf
    period_end: float = -math.inf

    def add(self, row: StatsRow, flat: NDArray[np.int64]) -> None:
        self.feature += flat
        self.score += np.asarray(row.score_hist, dtype=np.int64)
        self.rows += 1
        self.windows += row.windows
        self.anomalies += row.anomalies
        self.period_start = min(self.period_start, row.period_start)
        self.period_end = max(self.period_end, row.period_end)

    def stats(self, offsets: Sequence[int]) -> Stats:
        """The sum as a Stats message with the fields a sketch reads; unvalidated: the store validated every row."""
        counts = self.feature.tolist()
        r = self.first
        return Stats.model_construct(
            schema_version=1, msg_id=r.msg_id, device_id=r.device_id, ts=r.ts, model_version=r.model_version,
            period_start=self.period_start, period_end=self.period_end, windows=self.windows,
            anomalies=self.anomalies, samples=0, bad_readings=0, bad_rows=0, inference_errors=0, nan_scores=0,
            feature_hist=[counts[a:b] for a, b in itertools.pairwise(offsets)], score_hist=self.score.tolist(),
        )  # fmt: skip


def device_sketches(rows: Iterable[StatsRow], manifest: ModelManifest) -> tuple[dict[str, Sketch], list[Skipped]]:
    """Each device's rows of one model version merged into one sketch over `manifest`'s bins (see `StatsFold`)."""
    fold = StatsFold(manifest)
    for row in rows:
        fold.add(row)
    return fold.sketches()


def _slices(start: float, end: float, step: float) -> Iterator[tuple[float, float]]:
    """Consecutive ``[a, b)`` covering ``[start, end)``."""
    a = start
    while a < end:
        b = min(a + step, end)
        yield a, b
        a = b


def format_table(reports: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of reports for the CLI: scope, verdict, windows and the most drifted features.

    >>> print(format_table([{"scope": "fleet@v1", "verdict": "drift", "n_current": 1200,
    ...     "features": [{"name": "temp.mean", "psi": 0.41, "drifted": True},
    ...                  {"name": "vib.std", "psi": 0.02, "drifted": False}], "score": None}]))
    SCOPE     VERDICT  WINDOWS  TOP DRIFTED FEATURES (PSI)
    fleet@v1  drift       1200  temp.mean 0.410
    """
    header = ("SCOPE", "VERDICT", "WINDOWS", "TOP DRIFTED FEATURES (PSI)")
    lines = [(str(r["scope"]), str(r["verdict"]), str(r.get("n_current", "")), _top(r)) for r in reports]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(3)]
    out = []
    for scope, verdict, n, top in [header, *lines]:
        n_cell = n.ljust(widths[2]) if n == "WINDOWS" else n.rjust(widths[2])
        out.append(f"{scope.ljust(widths[0])}  {verdict.ljust(widths[1])}  {n_cell}  {top}".rstrip())
    return "\n".join(out)


def _top(report: Mapping[str, Any]) -> str:
    features = report.get("features") or []

    def psi(f: Mapping[str, Any]) -> float:
        value = f.get("psi")
        return math.inf if value is None else float(value)  # None: a non-finite PSI, i.e. a huge shift

    drifted = sorted((f for f in features if f.get("drifted")), key=psi, reverse=True)
    cells = [f"{f['name']} {_num(f.get('psi'))}" for f in drifted[:TOP_FEATURES]]
    if len(drifted) > TOP_FEATURES:
        cells.append(f"+{len(drifted) - TOP_FEATURES} more")
    score = report.get("score")
    if score and score.get("drifted"):
        cells.append(f"score {_num(score.get('psi'))}")
    if not cells and features:
        top = max(features, key=psi)
        return f"(largest: {top['name']} {_num(top.get('psi'))})"
    return ", ".join(cells)


def _num(value: float | None) -> str:
    return "inf" if value is None else f"{value:.3f}"
