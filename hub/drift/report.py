"""Drift reports: per-feature effect sizes and tests over sketches, gated and FDR-controlled.

A feature drifts only when its shift is both material (PSI ≥ `psi_threshold`) and significant after
Benjamini-Hochberg across the report's features (adjusted p ≤ `alpha`): on a large fleet every tiny
difference is significant, and on a small sample a big PSI is noise, so neither alone decides. Below
`min_samples` windows the verdict is ``insufficient_data``, never an alarm.

The tests assume independent windows. Overlapping windows of slowly changing machines are not: a reference that
measured how much more its own traffic varies than that (`dispersion`, per feature: `hub.drift.baselines`) has
the tests count each window as ``1 / dispersion`` of one (quasi-likelihood's overdispersion; PSI is unchanged).

`fleet_reports` computes the fleet-wide, per-cohort and per-device reports in one vectorised pass: all
scopes' counts are stacked into a ``(scopes, features, bins)`` array and each statistic is one numpy or
scipy call over it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hub.drift.divergence import js_distance_rows
from hub.drift.fdr import bh_adjust
from hub.drift.psi import PSI_MODERATE, PSI_SIGNIFICANT, psi_band, psi_rows
from hub.drift.results import AnomalyRateChange, DriftReport, FeatureDrift, ScoreDrift, Test, Verdict
from hub.drift.sketch import Sketch
from hub.drift.stattests import chi_square_rows, ks_binned_rows, two_proportion_rows
from hub.errors import SketchShapeError

MIN_SAMPLES = 200  # windows; about 10 per bin for 20 bins, so chi-square's approximation holds
ALPHA = 0.01
MIN_RATE_EFFECT = 0.1  # Cohen's h: e.g. an anomaly rate moving 1% → 2.2%, or 10% → 13.2%


@dataclass(frozen=True)
class _Settings:
    min_samples: int
    alpha: float
    psi_threshold: float
    test: Test
    min_rate_effect: float

    def __post_init__(self) -> None:
        if self.min_samples < 1:
            raise ValueError("min_samples must be at least 1")
        if not 0 < self.alpha < 1:
            raise ValueError("alpha must lie in (0, 1)")
        if self.psi_threshold <= 0 or self.min_rate_effect < 0:
            raise ValueError("psi_threshold must be positive and min_rate_effect non-negative")
        if self.test not in ("chi2", "ks"):
            raise ValueError(f"test must be 'chi2' or 'ks', not {self.test!r}")


def _as_reference(reference: Sketch | ArrayLike) -> Sketch:
    if isinstance(reference, Sketch):
        return reference
    hist = np.asarray(reference)
    windows = int(hist.sum(axis=-1).max()) if hist.size else 0
    return Sketch(hist, np.zeros(0, dtype=np.int64), windows, None)


def drift_report(
    reference: Sketch | ArrayLike,
    current: Sketch,
    feature_names: Sequence[str],
    *,
    scope: str,
    min_samples: int = MIN_SAMPLES,
    alpha: float = ALPHA,
    psi_threshold: float = PSI_SIGNIFICANT,
    test: Test = "chi2",
    min_rate_effect: float = MIN_RATE_EFFECT,
    dispersion: ArrayLike | None = None,
) -> DriftReport:
    """Compare one current sketch with the reference and decide whether it drifted.

    Parameters
    ----------
    reference : Sketch or array_like of shape (n_features, n_bins)
        The reference (a manifest's histograms or an earlier period). Given as a bare count matrix,
        the score and anomaly-rate checks are skipped.
    current : Sketch
        The merged sketch of the window under test, over the same bins.
    feature_names : sequence of str
        One name per feature row.
    scope : str
        What the report is about, carried through unchanged (``"fleet"``, ``"device:pump-7"``…).
    min_samples : int
        Fewer windows than this on either side gives ``insufficient_data``.
    alpha : float
        False discovery rate across features (Benjamini-Hochberg); also the level of the score and
        anomaly-rate tests.
    psi_threshold : float
        Minimum PSI for a feature (or the score) to count as drifted.
    test : {"chi2", "ks"}
        Which p-value enters the BH adjustment; both are reported.
    min_rate_effect : float
        Minimum Cohen's h for an anomaly-rate change to count.
    dispersion : array_like of shape (n_features + 1,), optional
        How many times more the reference's own traffic varies than independent windows would, per feature and
        (last) for the score (each >= 1): the chi-square and KS tests count each window as 1/dispersion of one.

    Examples
    --------
    >>> ref = Sketch(np.array([[500, 500], [500, 500]]), np.array([900, 100]), windows=1000, anomalies=100)
    >>> cur = Sketch(np.array([[900, 100], [505, 495]]), np.array([880, 120]), windows=1000, anomalies=120)
    >>> r = drift_report(ref, cur, ["temp.mean", "vib.mean"], scope="fleet")
    >>> r.verdict, r.drifted_features
    ('drift', ['temp.mean'])
    >>> r.reason
    'drift in 1 of 2 features: temp.mean'
    >>> small = Sketch(np.array([[80, 20], [50, 50]]), np.array([90, 10]), windows=100, anomalies=10)
    >>> drift_report(ref, small, ["temp.mean", "vib.mean"], scope="d", min_samples=50).verdict
    'drift'
    >>> drift_report(ref, small, ["temp.mean", "vib.mean"], scope="d", min_samples=50, dispersion=[8, 8, 8]).verdict
    'no_drift'
    >>> drift_report(ref, Sketch(np.array([[9, 1], [9, 1]]), np.array([10, 0]), 10, 0),
    ...              ["temp.mean", "vib.mean"], scope="device:pump-7").verdict
    'insufficient_data'
    """
    settings = _Settings(min_samples, alpha, psi_threshold, test, min_rate_effect)
    ref = _as_reference(reference)
    _check_shapes(ref, current, feature_names, label=scope)
    phi = None
    if dispersion is not None:
        phi = np.asarray(dispersion, dtype=np.float64)
        if phi.shape != (ref.n_features + 1,) or not np.all(np.isfinite(phi)) or np.any(phi < 1):
            raise ValueError(f"dispersion needs {ref.n_features + 1} finite values >= 1 (features, then the score)")
    return _reports(ref, [scope], [current], list(feature_names), settings, phi)[0]


def fleet_reports(
    reference: Sketch | ArrayLike,
    sketches_by_device: Mapping[str, Sketch],
    cohorts: Mapping[str, str],
    feature_names: Sequence[str] | None = None,
    *,
    min_samples: int = MIN_SAMPLES,
    alpha: float = ALPHA,
    psi_threshold: float = PSI_SIGNIFICANT,
    test: Test = "chi2",
    min_rate_effect: float = MIN_RATE_EFFECT,
) -> list[DriftReport]:
    """Fleet-wide, per-cohort and per-device drift reports against one reference, in that order.

    Parameters
    ----------
    reference : Sketch or array_like of shape (n_features, n_bins)
        The reference all scopes are compared with.
    sketches_by_device : mapping of device id to Sketch
        Each device's sketch merged over the time window.
    cohorts : mapping of device id to cohort name
        Devices missing here belong to no cohort (they still count fleet-wide and per device).
    feature_names : sequence of str, optional
        Defaults to ``f0, f1, …``.
    min_samples, alpha, psi_threshold, test, min_rate_effect
        As in `drift_report`.

    Returns
    -------
    list of DriftReport
        Scope ``fleet`` first, then ``cohort:<name>`` sorted by name, then ``device:<id>`` sorted by id.

    Examples
    --------
    >>> ref = Sketch(np.array([[500, 500]]), np.array([1000]), windows=1000, anomalies=0)
    >>> devices = {"a": Sketch(np.array([[300, 0]]), np.array([300]), 300, 0),
    ...            "b": Sketch(np.array([[150, 150]]), np.array([300]), 300, 0)}
    >>> for r in fleet_reports(ref, devices, {"a": "north", "b": "south"}):
    ...     print(r.scope, r.verdict)
    fleet drift
    cohort:north drift
    cohort:south no_drift
    device:a drift
    device:b no_drift
    """
    settings = _Settings(min_samples, alpha, psi_threshold, test, min_rate_effect)
    ref = _as_reference(reference)
    names = list(feature_names) if feature_names is not None else [f"f{i}" for i in range(ref.n_features)]
    if not sketches_by_device:
        raise ValueError("no device sketches")
    devices = sorted(sketches_by_device)
    for device in devices:
        _check_shapes(ref, sketches_by_device[device], names, label=f"device {device}")
    index = {device: i for i, device in enumerate(devices)}
    members: dict[str, list[int]] = {}
    for device, cohort in cohorts.items():
        if device in index:
            members.setdefault(cohort, []).append(index[device])

    hists = np.stack([sketches_by_device[d].feature_hist for d in devices])
    scores = _score_stack(ref, [sketches_by_device[d] for d in devices])
    windows = np.array([sketches_by_device[d].windows for d in devices], dtype=np.int64)
    anomalies = np.array([-1 if (a := sketches_by_device[d].anomalies) is None else a for d in devices], dtype=np.int64)
    groups = [np.arange(len(devices))] + [np.array(members[c]) for c in sorted(members)]
    scopes = ["fleet"] + [f"cohort:{c}" for c in sorted(members)] + [f"device:{d}" for d in devices]

    def grouped(values: NDArray[np.int64]) -> NDArray[np.int64]:
        return np.concatenate([np.stack([values[g].sum(axis=0) for g in groups]), values])

    group_anomalies = [None if np.any(anomalies[g] < 0) else int(anomalies[g].sum()) for g in groups]
    device_anomalies = [None if a < 0 else int(a) for a in anomalies]
    return _evaluate(
        ref,
        scopes,
        grouped(hists),
        grouped(scores),
        grouped(windows),
        group_anomalies + device_anomalies,
        names,
        settings,
    )


def _check_shapes(ref: Sketch, cur: Sketch, names: Sequence[str], *, label: str) -> None:
    if cur.feature_hist.shape != ref.feature_hist.shape:
        raise SketchShapeError(
            f"{label}: feature_hist shape {cur.feature_hist.shape} differs from the reference's "
            f"{ref.feature_hist.shape}; was it binned with another manifest?"
        )
    if len(names) != ref.n_features:
        raise ValueError(f"{len(names)} feature names for {ref.n_features} features")
    if ref.score_hist.size and cur.score_hist.shape != ref.score_hist.shape:
        raise SketchShapeError(f"{label}: {cur.score_hist.size} score bins, the reference has {ref.score_hist.size}")


def _score_stack(ref: Sketch, current: Sequence[Sketch]) -> NDArray[np.int64]:
    # Without a reference score histogram the score check is skipped, whatever the devices sent.
    if not ref.score_hist.size:
        return np.zeros((len(current), 0), dtype=np.int64)
    return np.stack([c.score_hist for c in current])


def _reports(
    ref: Sketch, scopes: list[str], current: list[Sketch], names: list[str], settings: _Settings,
    dispersion: NDArray[np.float64] | None = None,
) -> list[DriftReport]:
    return _evaluate(
        ref,
        scopes,
        np.stack([c.feature_hist for c in current]),
        _score_stack(ref, current),
        np.array([c.windows for c in current], dtype=np.int64),
        [c.anomalies for c in current],
        names,
        settings,
        dispersion,
    )


def _evaluate(
    ref: Sketch,
    scopes: list[str],
    hists: NDArray[np.int64],
    scores: NDArray[np.int64],
    windows: NDArray[np.int64],
    anomalies: list[int | None],
    names: list[str],
    s: _Settings,
    dispersion: NDArray[np.float64] | None = None,
) -> list[DriftReport]:
    """Every statistic for ``(scopes, features, bins)`` counts at once, then one report per scope."""
    phi = np.ones(len(names) + 1) if dispersion is None else dispersion
    psi = psi_rows(ref.feature_hist, hists)
    js = js_distance_rows(ref.feature_hist, hists)
    tested_ref, tested = ref.feature_hist / phi[:-1, None], hists / phi[None, :-1, None]  # effective counts
    chi2, dof, chi2_p = chi_square_rows(tested_ref, tested)
    ks, ks_p = ks_binned_rows(tested_ref, tested)
    n_feature = hists.sum(axis=-1)
    p_adj = bh_adjust(chi2_p if s.test == "chi2" else ks_p)
    enough = (windows >= s.min_samples) & (ref.windows >= s.min_samples)
    drifted = (psi >= s.psi_threshold) & (p_adj <= s.alpha) & (n_feature >= s.min_samples) & enough[:, None]

    score_cols: list[list[Any]] | None = None
    if ref.score_hist.size:
        s_psi = psi_rows(ref.score_hist, scores)
        s_js = js_distance_rows(ref.score_hist, scores)
        _, _, s_p = chi_square_rows(ref.score_hist / phi[-1], scores / phi[-1])
        s_drift = (s_psi >= s.psi_threshold) & (s_p <= s.alpha) & enough
        score_cols = [s_psi.tolist(), s_js.tolist(), s_p.tolist(), s_drift.tolist()]

    rate_cols: list[list[Any]] | None = None
    rate_ref = 0.0
    known = np.array([a is not None for a in anomalies])
    if ref.anomalies is not None and ref.windows > 0:
        x_cur = np.array([a if a is not None else 0 for a in anomalies], dtype=np.float64)
        n_cur = windows.astype(np.float64)
        rate_ref = ref.anomalies / ref.windows
        rate_cur = np.divide(x_cur, n_cur, out=np.zeros_like(x_cur), where=n_cur > 0)
        effect = 2 * np.arcsin(np.sqrt(rate_cur)) - 2 * np.arcsin(np.sqrt(rate_ref))
        z, r_p = two_proportion_rows(ref.anomalies, ref.windows, x_cur, n_cur)
        changed = (np.abs(effect) >= s.min_rate_effect) & (r_p <= s.alpha) & enough & known
        rate_cols = [rate_cur.tolist(), effect.tolist(), z.tolist(), r_p.tolist(), changed.tolist()]

    moderate = s.psi_threshold * (PSI_MODERATE / PSI_SIGNIFICANT)  # psi_band's bands, for every cell at once
    bands = np.where(psi >= s.psi_threshold, "significant", np.where(psi >= moderate, "moderate", "stable"))
    columns = [
        n_feature.tolist(),
        psi.tolist(),
        bands.tolist(),
        js.tolist(),
        chi2.tolist(),
        dof.tolist(),
        chi2_p.tolist(),
        ks.tolist(),
        ks_p.tolist(),
        p_adj.tolist(),
        drifted.tolist(),
    ]
    reports = []
    with paused_gc():
        for r, scope in enumerate(scopes):
            reports.append(_report(r, scope, names, columns, score_cols, rate_cols, rate_ref, known, ref, windows, s))
    return reports


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection inside: building a fleet's reports (~25 objects per scope, none cyclic, among
    millions of floats from `tolist`) otherwise sets off full collections that cost as much as the building."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _report(r: int, scope: str, names: list[str], columns: list[list[Any]], score_cols: list[list[Any]] | None,
            rate_cols: list[list[Any]] | None, rate_ref: float, known: NDArray[np.bool_], ref: Sketch,
            windows: NDArray[np.int64], s: _Settings) -> DriftReport:
    """Row `r` of the statistics' columns as one scope's report."""
    features = tuple(
        FeatureDrift(name, n, p, band, j, c, d, cp, k, kp, pa, dr)
        for name, n, p, band, j, c, d, cp, k, kp, pa, dr in zip(names, *(col[r] for col in columns), strict=True)
    )
    score = None
    if score_cols is not None:
        sp, sj, spv, sd = (col[r] for col in score_cols)
        score = ScoreDrift(sp, psi_band(sp, s.psi_threshold), sj, spv, sd)
    rate = None
    if rate_cols is not None and known[r]:
        rc, ef, zz, rp, ch = (col[r] for col in rate_cols)
        rate = AnomalyRateChange(rate_ref, rc, ef, zz, rp, ch)
    verdict, reason = _verdict(ref.windows, int(windows[r]), features, score, rate, s)
    return DriftReport(scope=scope, verdict=verdict, reason=reason, n_reference=ref.windows,
                       n_current=int(windows[r]), test=s.test, alpha=s.alpha, psi_threshold=s.psi_threshold,
                       min_samples=s.min_samples, features=features, score=score, anomaly_rate=rate)


def _verdict(
    n_ref: int,
    n_cur: int,
    features: tuple[FeatureDrift, ...],
    score: ScoreDrift | None,
    rate: AnomalyRateChange | None,
    s: _Settings,
) -> tuple[Verdict, str]:
    if n_cur < s.min_samples or n_ref < s.min_samples:
        side, n = ("current", n_cur) if n_cur < s.min_samples else ("reference", n_ref)
        return "insufficient_data", f"insufficient data: {n} {side} windows, fewer than {s.min_samples}"
    drifted = [f.name for f in features if f.drifted]
    findings = []
    if drifted:
        shown = ", ".join(drifted[:10]) + (f" and {len(drifted) - 10} more" if len(drifted) > 10 else "")
        findings.append(f"drift in {len(drifted)} of {len(features)} features: {shown}")
    if score is not None and score.drifted:
        findings.append(f"prediction scores shifted (PSI {score.psi:.3f})")
    if rate is not None and rate.changed:
        findings.append(f"anomaly rate {rate.rate_reference:.2%} → {rate.rate_current:.2%}")
    if findings:
        return "drift", "; ".join(findings)
    if not features:
        return "no_drift", "no drift: no features"
    top = max(features, key=lambda f: f.psi)
    material = sum(1 for f in features if f.psi >= s.psi_threshold)
    immaterial = sum(1 for f in features if f.p_adjusted <= s.alpha and f.psi < s.psi_threshold)
    sparse = sum(1 for f in features if f.n_current < s.min_samples)
    reason = f"no drift: largest PSI {top.psi:.3f} ({top.name})"
    reason += (
        f"; {material} feature(s) at PSI ≥ {s.psi_threshold} not confirmed" if material else f" below {s.psi_threshold}"
    )
    if immaterial:
        reason += f"; {immaterial} feature(s) significant after BH but immaterial"
    if sparse:
        reason += f"; {sparse} feature(s) with fewer than {s.min_samples} counts"
    return "no_drift", reason
