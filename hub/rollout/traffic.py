"""The candidate's expected scoring on the traffic a stage sees: a yardstick for when the control is not trusted.

A drifted incumbent cannot say how often a fix should alarm, and the fix's manifest reference is a long-run mix of
its training traffic, not of what the stage's devices replay right now (engines near the end of their lives alarm
far more often, rightly). So the hub scores the candidate itself on the feature vectors the devices sent during the
stage, and judges the devices' reported anomaly rate and score histogram against that.

Devices send every window their serving model alarms on, and a random slice of all windows (`agent` sampling:
every window with the same probability): two strata of each served version's windows, counted by its stats.

    expected alarms = A · (share of the alarm vectors the candidate alarms on)
                    + (N - A) · (share of the random vectors the served model did not alarm on that it alarms on)

with ``N`` windows and ``A`` alarms of the served version (from its stats); the score histogram likewise. When the
candidate is the served model (an active stage) the first share is 1 and the second 0 wherever the device and the hub
score alike, so the check there is that the devices do what the model does (right features, right artifact, right
counts), not whether the model is right: that is the gate's, on labels. Vectors of a version whose features differ
from the candidate's (another feature set, window or regime statistics) cannot be scored and are left to the caller
to leave out (`same_features`).

The same scores give the candidate's label-free performance on that traffic (`estimate_on_traffic`): with its
calibration (`shared.manifest.Calibration`, fitted on labelled rows it did not train on) each vector's chance of being
a failure, and with its threshold its decision, so expected true and false alarms and misses follow per stratum,
weighted as above (confidence-based performance estimation, as `hub.training.estimate` does on the served scores).

Pure: `hub.rollout.service.traffic` reads the vectors and stats and scores the candidate with onnxruntime.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from hub.rollout.evidence import Estimate, Expectation, Source
from hub.training.estimate import calibrated, rates
from shared.manifest import Calibration
from shared.manifest import same_inputs as same_features

MIN_EXPECTED_FAILURES = 5.0
"""Fewer failures than this expected among the vectors scored: no recall or F1 (a handful of likely failures make a
recall of noise)."""


@dataclass(frozen=True)
class Served:
    """One served version's traffic on the devices: its windows and alarms (stats), and the candidate's scores on
    the vectors the hub holds of it: those it alarmed on (`alarm_scores`; `alarm_random` of them also drawn into the
    random slice) and the random slice of those it did not (`quiet_scores`)."""

    version: str
    windows: int
    anomalies: int
    alarm_scores: np.ndarray
    quiet_scores: np.ndarray
    alarm_random: int = 0

    @property
    def samples(self) -> int:
        return len(self.quiet_scores) + self.alarm_random


@dataclass(frozen=True)
class Provenance:
    """Whose traffic and when (see `Expectation`)."""

    source: Source
    devices: tuple[str, ...]
    since: float
    until: float
    data_from: float | None = None
    data_to: float | None = None


def _strata(served: Sequence[Served]) -> Iterator[tuple[Served, int, tuple[tuple[np.ndarray, float], ...]]]:
    """Each served version whose windows can be estimated, its windows, and its two strata: the candidate's scores on
    its alarm vectors and on its random quiet ones, each with the windows one vector stands for. Left out: versions
    with alarms counted but none of their vectors held, or quiet windows but no random vector of them."""
    for s in served:
        n, a = max(s.windows, 0), min(max(s.anomalies, 0), max(s.windows, 0))
        if n == 0 or (a and not len(s.alarm_scores)) or (n - a and not len(s.quiet_scores)):
            continue
        yield s, n, ((np.asarray(s.alarm_scores, dtype=np.float64), a / max(len(s.alarm_scores), 1)),
                     (np.asarray(s.quiet_scores, dtype=np.float64), (n - a) / max(len(s.quiet_scores), 1)))


def expected_on_traffic(served: Sequence[Served], score_bin_edges: Sequence[float], threshold: float,
                        provenance: Provenance, *, min_samples: int) -> Expectation | None:
    """The candidate's expected anomaly rate and score histogram (over `score_bin_edges`, as agents count them)
    on the served versions' windows; None when the random slice holds fewer than `min_samples` vectors, or no
    version's windows can be estimated (alarms counted but none of their vectors held, or quiet windows but no
    random vector of them).

    >>> s = Served("v1", windows=100, anomalies=10, alarm_scores=np.array([0.9] * 10),
    ...            quiet_scores=np.array([0.1, 0.1, 0.1, 0.7]), alarm_random=1)
    >>> e = expected_on_traffic([s], [0.5], 0.5, Provenance("stage", ("d1",), 0.0, 60.0), min_samples=5)
    >>> round(e.anomaly_rate, 3), e.score_hist, e.vectors, e.samples
    (0.325, (68, 32), 14, 5)
    """
    edges = np.asarray(score_bin_edges, dtype=np.float64)
    hist = np.zeros(len(edges) + 1, dtype=np.float64)
    alarms = windows = 0.0
    vectors = samples = 0
    for s, n, strata in _strata(served):
        for scores, weight in strata:
            hist += weight * np.bincount(np.searchsorted(edges, scores, side="right"), minlength=len(hist))
            alarms += weight * float(np.count_nonzero(scores >= threshold))
        windows += n
        vectors += len(s.alarm_scores) + len(s.quiet_scores)
        samples += s.samples
    counts = tuple(int(c) for c in np.rint(hist))
    if samples < min_samples or not windows or not sum(counts):
        return None
    p = provenance
    return Expectation(min(alarms / windows, 1.0), counts, p.source, vectors, samples, p.devices, p.since, p.until,
                       p.data_from, p.data_to)


def estimate_on_traffic(served: Sequence[Served], calibration: Calibration | None, threshold: float,
                        source: Source, *, min_samples: int) -> Estimate:
    """The candidate's expected recall, precision, false-alarm rate and F1 on the served versions' windows (each
    stratum weighted as in `expected_on_traffic`), its decision ``score >= threshold``; a status and no figures when
    there is no `calibration`, the random slice holds fewer than `min_samples` vectors or fewer than
    `MIN_EXPECTED_FAILURES` failures are expected among the vectors.

    >>> cal = Calibration(x=[0.0, 1.0], y=[0.0, 1.0], fitted_on="eval", n=100, n_positive=20)
    >>> s = Served("v1", windows=100, anomalies=10, alarm_scores=np.array([0.9] * 10),
    ...            quiet_scores=np.array([0.1] * 36 + [0.7] * 4), alarm_random=1)
    >>> e = estimate_on_traffic([s], cal, 0.5, "stage", min_samples=5)
    >>> e.status, round(e.recall, 3), round(e.false_alarm_rate, 3), round(e.failure_share, 3)
    ('ok', 0.654, 0.048, 0.234)
    """
    samples = sum(s.samples for s in served)
    vectors = sum(len(s.alarm_scores) + len(s.quiet_scores) for s in served)
    where = f"{vectors} vectors ({samples} of the random slice) of the {source}'s traffic"
    if calibration is None:
        return Estimate("no_calibration", "the candidate's manifest has no calibration", source=source,
                        vectors=vectors, samples=samples)
    if samples < min_samples:
        return Estimate("too_few_samples", f"{where}, need {min_samples} of the random slice", source=source,
                        vectors=vectors, samples=samples, calibrated_on=calibration.fitted_on)
    tp = fp = fn = tn = 0.0
    expected_failures = 0.0
    for _, _, strata in _strata(served):
        for scores, weight in strata:
            p, alarm = calibrated(calibration, scores), scores >= threshold
            expected_failures += float(p.sum())
            tp += weight * float(p[alarm].sum())
            fp += weight * float((1.0 - p[alarm]).sum())
            fn += weight * float(p[~alarm].sum())
            tn += weight * float((1.0 - p[~alarm]).sum())
    total = tp + fp + fn + tn
    if expected_failures < MIN_EXPECTED_FAILURES or not total:
        return Estimate("too_few_failures", f"{expected_failures:.1f} failures expected among {where}, need "
                        f"{MIN_EXPECTED_FAILURES:g}", source=source, vectors=vectors, samples=samples,
                        calibrated_on=calibration.fitted_on)
    r = rates(tp, fp, fn, tn)
    return Estimate("ok", f"on {where}, calibrated on the {calibration.fitted_on} slice", r["recall"],
                    r["precision"], r["false_alarm_rate"], r["f1"], (tp + fn) / total, source, vectors, samples,
                    calibration.fitted_on)


__all__ = ["MIN_EXPECTED_FAILURES", "Provenance", "Served", "estimate_on_traffic", "expected_on_traffic",
           "same_features"]
