"""Drift references taken from the fleet's own traffic: what counts as healthy, the baselines, the reports.

A manifest's reference describes the machines a model trained on; a fleet built elsewhere differs (sites, asset
types, each sensor's calibration) and reads as drifted everywhere. An operator (or the hub on a version's first
hours, `hub.drift.service`) takes the reference from a window of live stats judged healthy instead. The stats
are counted over the manifest's bins, so the reference has the same bins and agents need no new manifest.

Healthy, as the hub can tell from stats (`healthy_rows`): a stats period whose anomaly rate exceeds
`max_anomaly_rate` is left out (the machine was failing or the model alarming on everything), and so are the
devices named in `drifted` (open drift against the version's current stored reference). Alarmed windows inside
a kept period stay in: a period's histograms cannot be split per window, and a reference without the fleet's
normal alarms would make every normal alarm read as drift.

`Baselines` holds the fleet's sketch and each device's and cohort's own; with ``own=True`` `baseline_reports`
compares a device or cohort with its own baseline (one machine's calibration is not drift), and the fleet, or
a device without enough windows of its own, with the fleet's.

With own baselines each scope also has a *dispersion* per feature (and the score): how many times more its
counts vary between time slices of the reference window than independent windows would (the heterogeneity
chi-square of the slices over its degrees of freedom, at least 1). Windows overlap, and one machine's traffic
wanders on its own (another operating regime, a new life of the same machine, a repair), so against its own
baseline a healthy machine's short window differs "significantly" on most features at any PSI threshold; the
drift tests count each window as 1/dispersion of one (`hub.drift.report.drift_report`), the PSI bar stays.

The anomaly count is not kept: as with a manifest's reference, the anomaly-rate check needs a rate from labelled
data, not from the window being judged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

import numpy as np

from hub.drift.report import MIN_SAMPLES, drift_report, fleet_reports
from hub.drift.results import DriftReport, Test
from hub.drift.sketch import Sketch, merge_sketches, pad_counts
from hub.errors import SketchShapeError
from hub.store.rows import StatsRow
from shared.manifest import Reference

MAX_ANOMALY_RATE = 0.5  # a stats period alarming on more than half its windows is not healthy traffic

Source = Literal["fleet", "device", "cohort"]


@dataclass(frozen=True)
class Healthy:
    """The stats rows kept for a reference and how many were left out, per reason."""

    rows: list[StatsRow]
    alarming: int
    drifted: int


def healthy_rows(
    rows: Iterable[StatsRow], *, max_anomaly_rate: float = MAX_ANOMALY_RATE, drifted: Iterable[str] = ()
) -> Healthy:
    """The rows of healthy traffic: not from a `drifted` device, not alarming on more than `max_anomaly_rate`.

    >>> row = lambda d, n, a: StatsRow("m", d, 0, 0, "v1", 0, 60, n, a, 0, 0, 0, 0, 0, [[n]], [n], None, None)
    >>> h = healthy_rows([row("a", 100, 2), row("a", 100, 80), row("b", 100, 0)], drifted=["b"])
    >>> [r.anomalies for r in h.rows], h.alarming, h.drifted
    ([2], 1, 1)
    """
    if not 0 < max_anomaly_rate <= 1:
        raise ValueError("max_anomaly_rate must lie in (0, 1]")
    out = Healthy([], 0, 0)
    skip = set(drifted)
    alarming = dropped = 0
    for row in rows:
        if row.device_id in skip:
            dropped += 1
        elif row.windows and row.anomalies / row.windows > max_anomaly_rate:
            alarming += 1
        else:
            out.rows.append(row)
    return replace(out, alarming=alarming, drifted=dropped)


def sketch_counts(sketch: Sketch, bins: Sequence[int]) -> dict[str, Any]:
    """A sketch as plain JSON data: each feature's counts over its own `bins`, the score counts, the windows."""
    return {"feature_hist": [sketch.feature_hist[i, :b].tolist() for i, b in enumerate(bins)],
            "score_hist": sketch.score_hist.tolist(), "windows": sketch.windows}


def counts_sketch(data: Mapping[str, Any], reference: Reference) -> Sketch:
    """`sketch_counts` data back as a sketch, checked against the manifest's bins (SketchShapeError otherwise)."""
    hist = data["feature_hist"]
    bins = [len(e) + 1 for e in reference.bin_edges]
    if [len(h) for h in hist] != bins or len(data["score_hist"]) != len(reference.score_bin_edges) + 1:
        raise SketchShapeError("a stored reference's bins do not match the manifest's")
    return Sketch(pad_counts(hist, max(bins, default=0)), np.asarray(data["score_hist"], dtype=np.int64),
                  int(data["windows"]), None)


def dispersion(slices: Sequence[Sketch]) -> np.ndarray:
    """Per feature, then the score: the heterogeneity chi-square of the `slices` (one scope's sketches over
    consecutive parts of the reference window) over its degrees of freedom, at least 1 (1: no slices to compare).

    >>> steady = [Sketch(np.array([[50, 50]]), np.array([]), 100)] * 4
    >>> dispersion(steady).tolist()
    [1.0, 1.0]
    >>> wandering = [Sketch(np.array([[a, 100 - a]]), np.array([]), 100) for a in (20, 80, 30, 70)]
    >>> dispersion(wandering).round(1).tolist()
    [34.7, 1.0]
    """
    if len(slices) < 2:
        return np.ones(slices[0].n_features + 1 if slices else 1)

    def phi(tables: np.ndarray) -> np.ndarray:  # (slices, rows, bins) -> per row
        rows = tables.sum(axis=-1, keepdims=True)
        cols = tables.sum(axis=0, keepdims=True)
        expected = rows * cols / np.maximum(cols.sum(axis=-1, keepdims=True), 1)
        terms = np.divide((tables - expected) ** 2, expected, out=np.zeros(tables.shape), where=expected > 0)
        dof = (np.count_nonzero(rows[..., 0], axis=0) - 1) * (np.count_nonzero(cols[0], axis=-1) - 1)
        return np.where(dof > 0, np.maximum(terms.sum(axis=(0, 2)) / np.maximum(dof, 1), 1.0), 1.0)

    features = phi(np.stack([s.feature_hist for s in slices]).astype(np.float64))
    scores = [s.score_hist for s in slices]
    score = phi(np.stack(scores)[:, None, :].astype(np.float64)) if scores[0].size else np.ones(1)
    return np.concatenate([features, score])


@dataclass(frozen=True)
class Baselines:
    """The fleet's reference sketch and each device's and cohort's own (anomaly counts dropped), and each scope's
    `dispersions` (``fleet``, ``device:<id>``, ``cohort:<name>`` → per feature and the score)."""

    fleet: Sketch
    devices: Mapping[str, Sketch]
    cohorts: Mapping[str, Sketch]
    dispersions: Mapping[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def take(cls, sketches: Mapping[str, Sketch], cohorts: Mapping[str, str],
             slices: Sequence[Mapping[str, Sketch]] | None = None) -> Baselines:
        """Baselines from each device's sketch over the reference window; `cohorts` maps device → cohort;
        `slices` (each device's sketch over consecutive parts of the window) gives the dispersions."""
        if not sketches:
            raise ValueError("no device sketches")
        devices = {d: replace(s, anomalies=None) for d, s in sorted(sketches.items())}
        members: dict[str, list[Sketch]] = {}
        for device, sketch in devices.items():
            if device in cohorts:
                members.setdefault(cohorts[device], []).append(sketch)
        dispersions: dict[str, np.ndarray] = {}
        if slices:
            groups = {"fleet": list(devices), **{f"device:{d}": [d] for d in devices}}
            for device in devices:
                if device in cohorts:
                    groups.setdefault(f"cohort:{cohorts[device]}", []).append(device)
            for scope, names in sorted(groups.items()):
                parts = [merge_sketches(p[d] for d in names if d in p) for p in slices if any(d in p for d in names)]
                dispersions[scope] = dispersion(parts)
        return cls(merge_sketches(devices.values()), devices,
                   {c: merge_sketches(m) for c, m in sorted(members.items())}, dispersions)

    def to_counts(self, bins: Sequence[int]) -> dict[str, Any]:
        return {"fleet": sketch_counts(self.fleet, bins),
                "devices": {d: sketch_counts(s, bins) for d, s in self.devices.items()},
                "cohorts": {c: sketch_counts(s, bins) for c, s in self.cohorts.items()},
                "dispersions": {scope: [round(float(x), 4) for x in v] for scope, v in self.dispersions.items()}}

    @classmethod
    def from_counts(cls, data: Mapping[str, Any], reference: Reference) -> Baselines:
        n = len(reference.bin_edges) + 1
        dispersions = {scope: np.asarray(v, dtype=np.float64) for scope, v in data.get("dispersions", {}).items()}
        if any(v.shape != (n,) or np.any(v < 1) for v in dispersions.values()):
            raise SketchShapeError("a stored reference's dispersions do not match the manifest's features")
        return cls(counts_sketch(data["fleet"], reference),
                   {d: counts_sketch(c, reference) for d, c in data.get("devices", {}).items()},
                   {c: counts_sketch(v, reference) for c, v in data.get("cohorts", {}).items()}, dispersions)


def baseline_reports(
    baselines: Baselines,
    sketches_by_device: Mapping[str, Sketch],
    cohorts: Mapping[str, str],
    feature_names: Sequence[str],
    *,
    own: bool,
    min_samples: int = MIN_SAMPLES,
    alpha: float = 0.01,
    psi_threshold: float = 0.2,
    test: Test = "chi2",
) -> list[tuple[DriftReport, Source]]:
    """`fleet_reports` against the fleet's baseline; with `own`, devices and cohorts against their own.

    A device or cohort whose own baseline has fewer than `min_samples` windows (or none: it joined later) is
    compared with the fleet's. Each report comes with the baseline it was compared with.

    >>> ref = Sketch(np.array([[500, 500]]), np.array([1000]), 1000)
    >>> a = Sketch(np.array([[900, 100]]), np.array([1000]), 1000)  # reads high: its calibration
    >>> b = Sketch(np.array([[100, 900]]), np.array([1000]), 1000)
    >>> base = Baselines.take({"a": a, "b": b}, {})
    >>> [(r.scope, r.verdict, src) for r, src in baseline_reports(base, {"a": a, "b": b}, {}, ["x"], own=True)]
    [('fleet', 'no_drift', 'fleet'), ('device:a', 'no_drift', 'device'), ('device:b', 'no_drift', 'device')]
    >>> [r.verdict for r, _ in baseline_reports(base, {"a": a, "b": b}, {}, ["x"], own=False)]
    ['no_drift', 'drift', 'drift']
    """
    kw: dict[str, Any] = {"min_samples": min_samples, "alpha": alpha, "psi_threshold": psi_threshold, "test": test}
    reports = fleet_reports(baselines.fleet, sketches_by_device, cohorts, feature_names, **kw)
    out: list[tuple[DriftReport, Source]] = []
    for report in reports:
        kind, _, name = report.scope.partition(":")
        own_ref: Sketch | None = None
        current = list(sketches_by_device.values())
        if kind == "fleet" and own:
            own_ref = baselines.fleet
        elif own and kind == "device":
            own_ref, current = baselines.devices.get(name), [sketches_by_device[name]]
        elif own and kind == "cohort":
            own_ref = baselines.cohorts.get(name)
            current = [s for d, s in sketches_by_device.items() if cohorts.get(d) == name]
        if own_ref is None or own_ref.windows < min_samples:
            out.append((report, "fleet"))
            continue
        phi = baselines.dispersions.get(report.scope)
        out.append((drift_report(own_ref, merge_sketches(current), feature_names, scope=report.scope, dispersion=phi,
                                 **kw), cast(Source, kind)))
    return out
