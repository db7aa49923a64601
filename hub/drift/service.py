"""The drift job: reads stats from the store, runs the pure drift statistics, stores and publishes the reports.

One `DriftService.run(now)` evaluates the window ``[now - window_s, now)``. Stats are grouped by model
version, because counts are only comparable over one manifest's bin edges; each version gets its own
fleet, cohort and device reports against that version's reference, with scopes such as ``fleet@v1``,
``cohort:site-a/pump@v1`` and ``device:dev-3@v1``. Stats that cannot be compared (no model version, an
unknown version, bins that do not match the manifest) are skipped with a logged reason, never fatal.

The reference is the version's newest one taken from the fleet (`take_reference`, stored, audited; with
device and cohort baselines when asked, `hub.drift.baselines`), else its manifest's. With
``drift.auto_reference_s`` set, a version with no stored reference gets one from its first seconds in the
field, taken by ``hub:auto``. Each stored report says which reference it was compared with.

A run reads the window's stats already summed per device, version and histogram layout
(`IngestStore.stats_sums`: roll-ups cumulative within each UTC day, `hub.store.rollup`; no JSON). With
``drift.whole_hours`` (the default) a day's window starts on an hour, so a day of per-minute stats from 10,000
devices (14.4 million rows) is ~30,000 roll-ups read (each day's latest, less the one before the start) and,
when the window ends now, no raw row at all. The run's reports are stored in one write. Taking a reference
judges each period's health, so it reads the rows themselves, in slices of `read_chunk_s`, folding them into
one running sum per device as it goes. All statistics live in `hub.drift`; this module only does the I/O.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hub.app.settings import DriftSettings
from hub.drift import DriftReport, Sketch, fleet_reports
from hub.drift.baselines import Baselines, Source, baseline_reports, healthy_rows
from hub.drift.fold import Skipped, StatsFold, device_sketches, slices
from hub.drift.report import paused_gc
from hub.errors import DriftReferenceError, RegistryError
from hub.registry.references import ManifestSource
from hub.store.ports import HubStore
from hub.store.rollup import hour_start
from hub.store.rows import Device, DriftReferenceRow, StatsRow
from shared.manifest import ModelManifest

if TYPE_CHECKING:
    from hub.app.metrics import HubMetrics

log = logging.getLogger(__name__)

__all__ = ["AUTO_ACTOR", "DriftService", "Skipped", "cohort_map", "cohort_of", "device_sketches", "format_table"]

TOP_FEATURES = 3  # drifted features shown per scope by `format_table`
READ_CHUNK_S = 600.0  # stats read per store query: 10 minutes of the fleet's rows
AUTO_ACTOR = "hub:auto"  # who takes a reference automatically (drift.auto_reference_s)
HOURS_SLACK = 24  # drift.whole_hours lengthens a window by at most 1/HOURS_SLACK of it
DISPERSION_SLICES = 8  # time slices of a reference window whose differences measure each scope's dispersion


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
        self._auto_done: set[str] = set()  # versions auto_references is done with

    def run(self, now: float) -> list[dict[str, Any]]:
        """Reports for ``[now - window_s, now)``, per model version: fleet, cohorts, devices; all stored in one write.

        With ``drift.whole_hours`` (the default) the window starts on the hour ``now - window_s`` falls in when
        that lengthens it by at most 1/`HOURS_SLACK` (a day's window: up to an hour), and is read from roll-ups
        alone (`window_start` says where it started); a short window (the demo's) starts exactly.

        A ``drift`` verdict also records a ``drift_detected`` event (atomically, in the store). Returns the
        stored reports (``DriftReport.to_dict()`` plus ``model_version``, ``window_start``, ``window_end``
        and ``report_id``), ordered by model version, then fleet, cohorts and devices. Runs with the cyclic
        garbage collector paused (`paused_gc`: a fleet's run builds millions of small objects, none cyclic).
        """
        with paused_gc():
            return self._run(now)

    def _run(self, now: float) -> list[dict[str, Any]]:
        start = now - self.settings.window_s
        if self.settings.whole_hours and start - hour_start(start) <= self.settings.window_s / HOURS_SLACK:
            start = hour_start(start)
        folds: dict[str, StatsFold] = {}
        unknown: Counter[str] = Counter()
        unversioned = n_rows = 0
        for summed in self.store.stats_sums(start, now):
            n_rows += summed.rows
            version = summed.model_version
            if version is None:
                unversioned += summed.rows
                continue
            fold = folds.get(version)
            if fold is None and version not in unknown:
                manifest = self.references.manifest(version)
                if manifest is not None:
                    fold = folds[version] = StatsFold(manifest)
            if fold is None:
                unknown[version] += summed.rows
            else:
                fold.add_sum(summed)

        self.auto_references(folds, now)
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
            for report, reference in reports:
                data = report.to_dict()
                data.update(model_version=version, window_start=start, window_end=now, reference=dict(reference))
                out.append(data)
        self._save(out, now)

        for s in skipped:
            log.warning("drift: skipped %d stats row(s) of model version %s: %s", s.rows, s.model_version, s.reason)
        self.last_skipped = skipped
        log.info("drift: %d report(s) over [%.0f, %.0f) from %d stats row(s); %d drift verdict(s)", len(out), start,
                 now, n_rows, sum(1 for r in out if r["verdict"] == "drift"))
        return out

    def _reports(
        self, manifest: ModelManifest, sketches: Mapping[str, Sketch], cohorts: Mapping[str, str]
    ) -> list[tuple[DriftReport, dict[str, Any]]]:
        """Every scope's report with the reference it was compared with (the stored one if any, else the manifest's)."""
        s = self.settings
        kw: dict[str, Any] = {"min_samples": s.min_samples, "alpha": s.alpha, "psi_threshold": s.psi_threshold,
                              "test": s.test}
        version = manifest.version
        stored = self.store.drift_reference(version)
        baselines = None
        if stored is not None:
            try:
                baselines = Baselines.from_counts(stored.counts, manifest.reference)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("drift: stored reference %d of %s is unusable (%s); using the manifest's",
                            stored.id, version, exc)
        pairs: list[tuple[DriftReport, dict[str, Any]]]
        if stored is None or baselines is None:
            reports = fleet_reports(Sketch.from_reference(manifest.reference), sketches,
                                    {device: cohorts[device] for device in sketches if device in cohorts},
                                    manifest.feature_names, **kw)
            pairs = [(r, {"source": "manifest"}) for r in reports]
        else:
            own = stored.device_baselines or s.device_baselines
            pairs = [(r, _reference_info(stored, src)) for r, src in baseline_reports(
                baselines, sketches, {d: cohorts[d] for d in sketches if d in cohorts}, manifest.feature_names,
                own=own, **kw)]
        return [(dataclasses.replace(r, scope=f"{r.scope}@{version}"), info) for r, info in pairs]

    def _save(self, reports: list[dict[str, Any]], now: float) -> None:
        """Store a run's reports in one write (ids into each report), then publish the fleet's and cohorts'."""
        ids = self.store.save_drift_reports([(d, d["scope"], d["verdict"]) for d in reports], now)
        for data, report_id in zip(reports, ids, strict=True):
            data["report_id"] = report_id
            if self.metrics is not None and not data["scope"].startswith("device:"):
                self.metrics.set_drift_report(data)  # fleet and cohorts only: one series per device would explode

    # -- references taken from the fleet ------------------------------------------------------------
    def take_reference(
        self,
        version: str,
        start: float,
        end: float,
        *,
        reason: str,
        actor: str,
        now: float,
        devices: Sequence[str] | None = None,
        device_baselines: bool | None = None,
    ) -> DriftReferenceRow:
        """Take `version`'s drift reference from its healthy stats in ``[start, end)`` (by period end), store it
        as the version's current reference and audit it (`model_audit` action ``drift_reference``).

        `devices` limits it to those devices (default: every device that sent stats of `version`). Left out as
        not healthy (`hub.drift.baselines.healthy_rows`): periods alarming on more than
        ``drift.reference_max_anomaly_rate`` of their windows, and, when the version already has a stored
        reference, devices whose latest device report against it says drift. Raises RegistryError for a version
        without a manifest, DriftReferenceError for a bad window or fewer than ``drift.min_samples`` windows.
        """
        manifest = self.references.manifest(version)
        if manifest is None:
            raise RegistryError(f"unknown model version {version!r}: no manifest")
        if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
            raise DriftReferenceError(f"the window must end after it starts, got [{start}, {end})")
        if start >= now:
            raise DriftReferenceError("the window starts in the future")
        if devices is not None and not devices:
            raise DriftReferenceError("devices, when given, must name at least one device")
        drifted = self._open_drift(version)
        fold = StatsFold(manifest)
        spans: dict[str, tuple[float, float]] = {}  # each device's first and last period end in the window
        rows = alarming = dropped = other = 0
        for healthy in self._healthy(version, start, end, devices, drifted):
            other += healthy.other
            alarming += healthy.alarming
            dropped += healthy.drifted
            for stats_row in healthy.rows:
                rows += 1
                fold.add(stats_row)
                first, last = spans.get(stats_row.device_id, (stats_row.period_end, stats_row.period_end))
                spans[stats_row.device_id] = (min(first, stats_row.period_end), max(last, stats_row.period_end))
        sketches, bad = fold.sketches()
        where = f"{version} in [{start:.0f}, {end:.0f})" + (f" from {', '.join(devices)}" if devices else "")
        if not sketches:
            raise DriftReferenceError(f"no healthy stats of {where} ({alarming} period(s) alarming, "
                                      f"{dropped} from devices with open drift)")
        cohorts = cohort_map(self.store.devices())
        own = bool(device_baselines if device_baselines is not None else self.settings.device_baselines)
        parts = self._slices(manifest, version, start, end, devices, drifted, spans) if own else None
        baselines = Baselines.take(sketches, {d: cohorts[d] for d in sketches if d in cohorts}, parts)
        if baselines.fleet.windows < self.settings.min_samples:
            raise DriftReferenceError(f"only {baselines.fleet.windows} healthy windows of {where}, fewer than "
                                      f"drift.min_samples ({self.settings.min_samples})")
        summary = {
            "stats_rows": rows, "n_devices": len(sketches),
            "devices_windows": {d: s.windows for d, s in sketches.items()},
            "anomalies": sum(s.anomalies or 0 for s in sketches.values()),
            "excluded": {"alarming_periods": alarming, "open_drift_periods": dropped,
                         "open_drift_devices": sorted(drifted),
                         "other_versions": other, "bad_bins": sum(b.rows for b in bad)},
            "max_anomaly_rate": self.settings.reference_max_anomaly_rate,
            "cohorts": {c: s.windows for c, s in baselines.cohorts.items()},
            "max_dispersion": {scope: round(float(v.max()), 2) for scope, v in baselines.dispersions.items()},
        }  # fmt: skip
        row = DriftReferenceRow(
            id=0, version=version, ts=now, actor=actor, reason=reason, start=start, end=end,
            devices=None if devices is None else sorted(devices),
            device_baselines=own,
            windows=baselines.fleet.windows, summary=summary,
            counts=baselines.to_counts([len(e) + 1 for e in manifest.reference.bin_edges]),
        )
        saved = self.store.save_drift_reference(row)
        log.info("drift: reference %d of %s taken by %s from %d windows of %d device(s) in [%.0f, %.0f): %s", saved.id,
                 version, actor, saved.windows, len(sketches), start, end, reason)
        return saved

    def _healthy(self, version: str, start: float, end: float, devices: Sequence[str] | None,
                 drifted: set[str]) -> Iterator[_Read]:
        """The healthy stats rows of `version` in ``[start, end)``, a store read at a time."""
        for a, b in slices(*self._stats_span(version, start, end), self.read_chunk_s):
            batch = self.store.stats_between(a, b, list(devices) if devices is not None else None)
            mine = [r for r in batch if r.model_version == version]
            healthy = healthy_rows(mine, max_anomaly_rate=self.settings.reference_max_anomaly_rate, drifted=drifted)
            yield _Read(healthy.rows, healthy.alarming, healthy.drifted, len(batch) - len(mine))

    def _slices(self, manifest: ModelManifest, version: str, start: float, end: float,
                devices: Sequence[str] | None, drifted: set[str],
                spans: Mapping[str, tuple[float, float]]) -> list[dict[str, Sketch]]:
        """Each device's healthy stats in `DISPERSION_SLICES` consecutive parts of its own span in the window (a
        second read of the window: the spans are known only after the first)."""
        parts = [StatsFold(manifest) for _ in range(DISPERSION_SLICES)]
        for healthy in self._healthy(version, start, end, devices, drifted):
            for row in healthy.rows:
                first, last = spans[row.device_id]
                part = int((row.period_end - first) / max(last - first, 1e-9) * DISPERSION_SLICES)
                parts[min(part, DISPERSION_SLICES - 1)].add(row)
        return [part.sketches()[0] for part in parts]

    def _stats_span(self, version: str, start: float, end: float) -> tuple[float, float]:
        """``[start, end)`` narrowed to where `version`'s stats lie (empty when it has none): a window typed as
        ``[0, 2e9)`` is read in a few slices, not three million queries holding an API worker for hours."""
        ends = self.store.stats_ends(version)
        if ends is None:
            return start, start
        return max(start, ends[0]), min(end, math.nextafter(ends[1], math.inf))

    def _open_drift(self, version: str) -> set[str]:
        """Devices whose latest device report against `version`'s stored reference says drift (none without one)."""
        if self.store.drift_reference(version) is None:
            return set()  # against the manifest's reference a whole fleet may read as drifted: that says nothing
        out = set()
        for device in self.store.devices():
            latest = self.store.drift_reports(limit=1, scope=f"device:{device.device_id}@{version}")
            if latest and latest[0].verdict == "drift" and latest[0].report.get("reference", {}).get("id"):
                out.add(device.device_id)
        return out

    def auto_references(self, versions: Iterable[str], now: float) -> list[DriftReferenceRow]:
        """With ``drift.auto_reference_s`` set: a reference for each of `versions` that has none and whose first
        ``auto_reference_s`` in the field (from its activation in the registry, else its first stats) are over."""
        span = self.settings.auto_reference_s
        if span is None:
            return []
        taken = []
        for version in sorted(versions):
            if version in self._auto_done or self.store.drift_reference(version) is not None:
                self._auto_done.add(version)
                continue
            first = self._field_start(version)
            if first is None or now < first + span:
                continue
            self._auto_done.add(version)  # once: a refusal is logged, not retried every run
            try:
                taken.append(self.take_reference(
                    version, first, first + span, actor=AUTO_ACTOR, now=now,
                    reason=f"automatic: the first {span / 3600:g} h of {version} in the field "
                    "(drift.auto_reference_s)"))
            except (DriftReferenceError, RegistryError) as exc:
                log.warning("drift: no automatic reference for %s: %s", version, exc)
        return taken

    def _field_start(self, version: str) -> float | None:
        activated = [a.ts for a in self.store.model_audit(version=version, limit=10_000) if a.to_status == "active"]
        return min(activated) if activated else self.store.first_stats_ts(version)

    def reference(self, version: str, *, limit: int = 100) -> tuple[DriftReferenceRow | None, list[DriftReferenceRow]]:
        """`version`'s current stored reference (None: drift uses the manifest's) and its history, newest first."""
        return self.store.drift_reference(version), self.store.drift_references(version, limit=limit)


@dataclasses.dataclass(frozen=True)
class _Read:
    """One store read of a reference window: the healthy rows and what was left out."""

    rows: list[StatsRow]
    alarming: int
    drifted: int
    other: int


def _reference_info(stored: DriftReferenceRow, source: Source) -> dict[str, Any]:
    """What a report says of its reference: which baseline of which stored reference, taken from which window."""
    return {"source": source, "id": stored.id, "start": stored.start, "end": stored.end, "ts": stored.ts}


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


def format_table(reports: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of reports for the CLI: scope, verdict, windows and the most drifted features, then the
    rule the reports were decided by (their own thresholds, not the defaults) and the reference they were
    compared with.

    >>> print(format_table([{"scope": "fleet@v1", "verdict": "drift", "n_current": 1200, "model_version": "v1",
    ...     "psi_threshold": 0.3, "alpha": 0.01, "test": "chi2", "min_samples": 200,
    ...     "reference": {"source": "manifest"},
    ...     "features": [{"name": "temp.mean", "psi": 0.41, "drifted": True},
    ...                  {"name": "vib.std", "psi": 0.02, "drifted": False}], "score": None}]))
    SCOPE     VERDICT  WINDOWS  TOP DRIFTED FEATURES (PSI ≥ 0.3)
    fleet@v1  drift       1200  temp.mean 0.410
    drifted: PSI ≥ 0.3 and BH-adjusted p ≤ 0.01 (chi2), with at least 200 windows on each side
    v1 compared with: the manifest's reference
    """
    thresholds = sorted({r["psi_threshold"] for r in reports if r.get("psi_threshold") is not None})
    psi_label = f"PSI ≥ {thresholds[0]:g}" if len(thresholds) == 1 else "PSI"
    header = ("SCOPE", "VERDICT", "WINDOWS", f"TOP DRIFTED FEATURES ({psi_label})")
    lines = [(str(r["scope"]), str(r["verdict"]), str(r.get("n_current", "")), _top(r)) for r in reports]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(3)]
    out = []
    for scope, verdict, n, top in [header, *lines]:
        n_cell = n.ljust(widths[2]) if n == "WINDOWS" else n.rjust(widths[2])
        out.append(f"{scope.ljust(widths[0])}  {verdict.ljust(widths[1])}  {n_cell}  {top}".rstrip())
    rules = sorted({(r["psi_threshold"], r["alpha"], r["test"], r["min_samples"]) for r in reports
                    if all(r.get(k) is not None for k in ("psi_threshold", "alpha", "test", "min_samples"))})
    out += [f"drifted: PSI ≥ {t:g} and BH-adjusted p ≤ {a:g} ({test}), with at least {n} windows on each side"
            for t, a, test, n in rules]
    out += _references(reports)
    return "\n".join(out)


def _references(reports: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per model version: which reference its reports were compared with."""
    by_version: dict[str, list[Mapping[str, Any]]] = {}
    for r in reports:
        if r.get("model_version") and r.get("reference"):
            by_version.setdefault(str(r["model_version"]), []).append(r["reference"])
    lines = []
    for version, refs in sorted(by_version.items()):
        stored = next((ref for ref in refs if ref.get("id")), None)
        if stored is None:
            lines.append(f"{version} compared with: the manifest's reference")
            continue
        own = Counter(str(ref.get("source")) for ref in refs if ref.get("source") in ("device", "cohort"))
        span = f"{_iso(stored.get('start'))} … {_iso(stored.get('end'))}"
        line = f"{version} compared with: reference #{stored['id']} taken from the fleet ({span})"
        if own:
            line += "; own baselines for " + ", ".join(f"{n} {kind}(s)" for kind, n in sorted(own.items()))
        lines.append(line)
    return lines


def _iso(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "?"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%MZ")


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
