"""What devices report during a stage, as the hub summarises it from stats messages and model events.

The caller counts everything since the stage was entered (`RolloutState.entered_at`): a device's
evidence is about this stage only. `Evidence.candidate` is what the candidate did on the device (active,
or scored beside the incumbent in shadow mode); `Evidence.incumbent` is what the incumbent did there in
the same period. Incumbent numbers from every device are pooled into the *control*: devices outside the
stage, and in the shadow stage the very devices that run the candidate in shadow.

The control is only a fair yardstick while the incumbent works: when the fleet drifted away from the
incumbent's training data, the incumbent is what is broken, and a candidate retrained on recent data
*should* score differently. `ControlTrust` carries the hub's verdict on that (its latest drift report on
the incumbent); `Expectation` is the candidate's own yardstick, judged against instead: its scores on the stage's
traffic (`hub.rollout.traffic`) when the hub holds enough of it, else its manifest's reference.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from hub.rollout.errors import RolloutError


@dataclass(frozen=True)
class Scoring:
    """One model's scoring over a period: windows, anomalies, errors, NaN scores, p99 latency, score histogram.

    `score_hist` counts scores over the manifest's score bin edges (empty when not reported).
    """

    windows: int = 0
    anomalies: int = 0
    inference_errors: int = 0
    nan_scores: int = 0
    latency_p99_ms: float | None = None
    score_hist: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        counts = (self.windows, self.anomalies, self.inference_errors, self.nan_scores, *self.score_hist)
        if any(c < 0 for c in counts):
            raise RolloutError("scoring counts must be non-negative")
        if self.latency_p99_ms is not None and not math.isfinite(self.latency_p99_ms):
            raise RolloutError("latency_p99_ms must be finite")

    @property
    def anomaly_rate(self) -> float:
        return self.anomalies / self.windows if self.windows else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "anomalies": self.anomalies,
            "inference_errors": self.inference_errors,
            "nan_scores": self.nan_scores,
            "latency_p99_ms": self.latency_p99_ms,
            "score_hist": list(self.score_hist),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scoring:
        lat = d.get("latency_p99_ms")
        return cls(
            windows=int(d["windows"]),
            anomalies=int(d["anomalies"]),
            inference_errors=int(d["inference_errors"]),
            nan_scores=int(d["nan_scores"]),
            latency_p99_ms=None if lat is None else float(lat),
            score_hist=tuple(int(c) for c in d["score_hist"]),
        )


def pool(scorings: Iterable[Scoring]) -> Scoring:
    """Counts and histograms summed, latency the worst p99 (p99s do not merge; the max bounds them).

    >>> pool([Scoring(10, 1, score_hist=(6, 4)), Scoring(5, 0, latency_p99_ms=3.0, score_hist=(5, 0))])
    Scoring(windows=15, anomalies=1, inference_errors=0, nan_scores=0, latency_p99_ms=3.0, score_hist=(11, 4))
    """
    out = Scoring()
    for s in scorings:
        if out.score_hist and s.score_hist and len(out.score_hist) != len(s.score_hist):
            raise RolloutError(
                f"score histograms with {len(out.score_hist)} and {len(s.score_hist)} bins cannot be pooled"
            )
        hist = (
            tuple(a + b for a, b in zip(out.score_hist, s.score_hist, strict=True))
            if out.score_hist and s.score_hist
            else out.score_hist or s.score_hist
        )
        lats = [x for x in (out.latency_p99_ms, s.latency_p99_ms) if x is not None]
        out = Scoring(
            windows=out.windows + s.windows,
            anomalies=out.anomalies + s.anomalies,
            inference_errors=out.inference_errors + s.inference_errors,
            nan_scores=out.nan_scores + s.nan_scores,
            latency_p99_ms=max(lats) if lats else None,
            score_hist=hist,
        )
    return out


Source = Literal["reference", "stage", "fleet"]
"""Where an `Expectation` comes from: the manifest's reference, or the candidate scored on the traffic of the stage's
devices (or of the fleet's) during the stage (`hub.rollout.traffic`)."""


@dataclass(frozen=True)
class Expectation:
    """What a model expects of its own scoring: the share of windows at or above its decision threshold and the
    histogram of its scores.

    From its manifest (``source`` ``reference``: field traffic scored by the model when it was made), or from the
    traffic the candidate sees (``stage``, ``fleet``: the candidate scored at the hub on the feature vectors devices
    sent during the stage, `hub.rollout.traffic`); then `vectors` were scored (`samples` of them the devices' random
    slice), from `devices`, received between `since` and `until` (hub clock), windows of data time `data_from` to
    `data_to`.

    >>> e = Expectation.from_reference([0.25, 0.5, 0.75], [40, 30, 20, 10], threshold=0.5)
    >>> e.anomaly_rate, e.score_hist
    (0.3, (40, 30, 20, 10))
    """

    anomaly_rate: float
    score_hist: tuple[int, ...]
    source: Source = "reference"
    vectors: int = 0
    samples: int = 0
    devices: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None
    data_from: float | None = None
    data_to: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.anomaly_rate) and 0.0 <= self.anomaly_rate <= 1.0):
            raise RolloutError(f"an expected anomaly rate lies in [0, 1], got {self.anomaly_rate}")
        if any(c < 0 for c in self.score_hist) or not sum(self.score_hist):
            raise RolloutError("an expected score histogram needs non-negative counts, not all zero")
        if self.source not in ("reference", "stage", "fleet"):
            raise RolloutError(f"unknown expectation source {self.source!r}")

    @classmethod
    def from_reference(cls, score_bin_edges: Sequence[float], score_histogram: Sequence[int], threshold: float
                       ) -> Expectation:
        """The expectation of a manifest's reference (``score_bin_edges``, ``score_histogram``, ``threshold``).

        Bins are ``[edge[i-1], edge[i])`` with open outer bins (as agents count them); scores are
        probabilities, so the outer bins end at 0 and 1. The bin holding the threshold counts in proportion
        to its part above the threshold (scores spread evenly within a bin).
        """
        edges = [float(e) for e in score_bin_edges]
        if len(score_histogram) != len(edges) + 1:
            raise RolloutError("a score histogram has len(score_bin_edges) + 1 bins")
        bounds = [min([0.0, *edges[:1]]), *edges, max([1.0, *edges[-1:]])]
        hist = tuple(int(c) for c in score_histogram)
        above = 0.0
        for count, (lo, hi) in zip(hist, itertools.pairwise(bounds), strict=True):
            if threshold <= lo:
                above += count
            elif threshold < hi:
                above += count * (hi - threshold) / (hi - lo)
        total = sum(hist)
        return cls(above / total if total else 0.0, hist)

    @property
    def traffic(self) -> bool:
        """Whether it was measured on the traffic of the stage (its own devices' or the fleet's)."""
        return self.source != "reference"

    def describe(self) -> str:
        """What it is, for a decision's yardstick: the reference, or which vectors of whose traffic."""
        if not self.traffic:
            return "the candidate's own reference"
        whose = "its stage's devices" if self.source == "stage" else "the fleet"
        return (f"the candidate's scores on the traffic of {whose} during the stage: {self.vectors} feature vectors "
                f"({self.samples} of the random slice) from {len(self.devices)} device(s)")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"anomaly_rate": self.anomaly_rate, "score_hist": list(self.score_hist)}
        if self.traffic:
            out.update(source=self.source, vectors=self.vectors, samples=self.samples, devices=list(self.devices),
                       since=self.since, until=self.until, data_from=self.data_from, data_to=self.data_to)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Expectation:
        def opt(key: str) -> float | None:
            return None if d.get(key) is None else float(d[key])

        return cls(float(d["anomaly_rate"]), tuple(int(c) for c in d["score_hist"]), d.get("source", "reference"),
                   int(d.get("vectors", 0)), int(d.get("samples", 0)), tuple(str(x) for x in d.get("devices", ())),
                   opt("since"), opt("until"), opt("data_from"), opt("data_to"))


EstimateStatus = Literal["ok", "no_calibration", "too_few_samples", "too_few_failures", "unscored"]


@dataclass(frozen=True)
class Estimate:
    """The candidate's label-free performance on the stage's traffic (`hub.rollout.traffic.estimate_on_traffic`):
    its calibrated scores on the vectors the devices sent say how many of the windows are failures and which of them
    it alarms on. `status` ``ok`` carries the figures (None where undefined); any other says why there are none
    (`reason`). `failure_share` is the share of the traffic's windows expected to be failures; `gate_recall` and
    `gate_false_alarm_rate` the candidate's gate-time figures (its gate decision's, else its manifest's), what the
    estimate is held against (`hub.rollout.health`).

    >>> Estimate("ok", "on 80 random vectors", recall=0.9, f1=0.8).to_dict()["recall"]
    0.9
    """

    status: EstimateStatus
    reason: str
    recall: float | None = None
    precision: float | None = None
    false_alarm_rate: float | None = None
    f1: float | None = None
    failure_share: float | None = None
    source: Source | None = None
    vectors: int = 0
    samples: int = 0
    calibrated_on: str | None = None
    gate_recall: float | None = None
    gate_false_alarm_rate: float | None = None

    def __post_init__(self) -> None:
        figures = (self.recall, self.precision, self.false_alarm_rate, self.f1, self.failure_share,
                   self.gate_recall, self.gate_false_alarm_rate)
        if any(v is not None and not (math.isfinite(v) and -1e-9 <= v <= 1.0 + 1e-9) for v in figures):
            raise RolloutError(f"estimated figures lie in [0, 1], got {figures}")
        if self.status not in get_args(EstimateStatus):
            raise RolloutError(f"unknown estimate status {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Estimate:
        def opt(key: str) -> float | None:
            return None if d.get(key) is None else float(d[key])

        return cls(d["status"], str(d["reason"]), opt("recall"), opt("precision"), opt("false_alarm_rate"),
                   opt("f1"), opt("failure_share"), d.get("source"), int(d.get("vectors", 0)),
                   int(d.get("samples", 0)), d.get("calibrated_on"), opt("gate_recall"),
                   opt("gate_false_alarm_rate"))


@dataclass(frozen=True)
class ControlTrust:
    """Whether the control (the incumbent's numbers) is a fair yardstick for the candidate, and why.

    >>> ControlTrust.from_drift("fleet@v1", "drift", at=1000.0, detail="drift in 3 of 12 features").trusted
    False
    """

    trusted: bool = True
    reason: str = "no drift verdict on the incumbent"

    @classmethod
    def from_drift(cls, scope: str, verdict: str | None, *, at: float | None = None, detail: str | None = None
                   ) -> ControlTrust:
        """From the hub's latest drift verdict on the incumbent (`scope` such as ``fleet@v1``; None: none)."""
        if verdict is None:
            return cls(True, f"no drift verdict on {scope}")
        when = "" if at is None else f" at {at:.0f}"
        return cls(verdict != "drift", f"latest drift verdict on {scope}{when}: {detail or verdict.replace('_', ' ')}")


Basis = Literal["control", "expectation"]


@dataclass(frozen=True)
class Yardstick:
    """What the candidate's anomaly rate and score distribution were judged against, and why.

    ``control``: the incumbent's live numbers (or the kept control, or the plan's baseline); ``expectation``:
    the candidate's own, when the control is not trusted: `expectation` is it (its manifest reference, or its
    scores on the stage's traffic, with the vectors, devices and period it was measured on).
    """

    basis: Basis
    reason: str
    expectation: Expectation | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"basis": self.basis, "reason": self.reason}
        if self.expectation is not None:
            out["expectation"] = self.expectation.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Yardstick:
        basis = d["basis"]
        if basis not in ("control", "expectation"):
            raise RolloutError(f"unknown yardstick {basis!r}")
        expect = d.get("expectation")
        return cls(basis, str(d["reason"]), None if expect is None else Expectation.from_dict(expect))


@dataclass(frozen=True)
class Evidence:
    """One device during the current stage.

    `loaded` means the device reported the candidate loaded (model event ``loaded`` or ``swapped`` for the
    candidate's version); `refused`, `health_failed` and `rolled_back` mirror the model events of that name
    for the candidate. `disagreements` counts shadow windows where the two models decided differently.
    """

    loaded: bool = False
    refused: bool = False
    health_failed: bool = False
    rolled_back: bool = False
    candidate: Scoring | None = None
    incumbent: Scoring | None = None
    disagreements: int = 0
    detail: str | None = None

    def __post_init__(self) -> None:
        if self.disagreements < 0:
            raise RolloutError("disagreements must be non-negative")

    def to_dict(self) -> dict[str, Any]:
        return {
            "loaded": self.loaded,
            "refused": self.refused,
            "health_failed": self.health_failed,
            "rolled_back": self.rolled_back,
            "candidate": None if self.candidate is None else self.candidate.to_dict(),
            "incumbent": None if self.incumbent is None else self.incumbent.to_dict(),
            "disagreements": self.disagreements,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Evidence:
        cand, inc = d.get("candidate"), d.get("incumbent")
        return cls(
            loaded=bool(d["loaded"]),
            refused=bool(d["refused"]),
            health_failed=bool(d["health_failed"]),
            rolled_back=bool(d["rolled_back"]),
            candidate=None if cand is None else Scoring.from_dict(cand),
            incumbent=None if inc is None else Scoring.from_dict(inc),
            disagreements=int(d.get("disagreements", 0)),
            detail=d.get("detail"),
        )


@dataclass(frozen=True)
class DeviceSummary:
    """What the state remembers of one stage device: loaded, windows scored, and its problem if any."""

    device_id: str
    loaded: bool = False
    windows: int = 0
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "loaded": self.loaded, "windows": self.windows, "problem": self.problem}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeviceSummary:
        return cls(str(d["device_id"]), bool(d["loaded"]), int(d["windows"]), d.get("problem"))
