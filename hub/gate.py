"""The evaluation gate: may a candidate model replace the incumbent? A pure verdict with all its numbers.

Both models are scored on the same frozen evaluation slice. The candidate passes when its recall on
confirmed faults drops and its false-alarm rate rises by no more than set tolerances, overall and in every
cohort large enough to judge, its ONNX artifact scores like the estimator it came from, and its latency is
within budget. Every check is recorded, passed or not, so the decision explains itself.

Verdicts, in order of precedence:

- ``fail`` when a check that does not depend on the slice's size fails (parity, latency, slice mismatch);
- ``insufficient_data`` when the slice has too few positives or negatives: metrics on a tiny slice can
  neither pass nor fail a candidate, and a candidate is never deployed on one;
- ``fail`` when a metric check fails;
- ``pass`` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from models.training import classification_metrics, cohort_metrics

Verdict = Literal["pass", "fail", "insufficient_data"]

_EPS = 1e-9
"""Slack on every comparison, so 0.95 - 1.0 (= -0.0500000000000000444) does not exceed a 0.05 tolerance."""


@dataclass(frozen=True)
class GateConfig:
    """Tolerances of the gate. The defaults, and why:

    - recall may drop by 0.02 (one missed fault in 50) and the false-alarm rate rise by 0.01 (one extra
      alarm per 100 healthy windows): small enough that a retrain cannot quietly trade faults for alarms;
    - a cohort (site/asset type) may regress by 0.05 in recall and 0.02 in false-alarm rate: cohorts are
      smaller and noisier, but a regression that size on one site is what per-cohort tracking is for;
      cohorts under 20 positives (recall) or 50 negatives (false alarms) are recorded but not judged;
    - the slice needs 50 positives and 200 negatives, so one flipped fault (0.02) or two extra alarms
      (0.01) fit inside the tolerances instead of deciding the verdict;
    - parity as in models/onnx_export.py: max |ONNX - scikit-learn| 1e-4 and no decision flips;
    - 5 ms p99 per single-window inference, measured on the hub: the agent targets 2 ms on a gateway
      core (bench/agent.py), and a model already slow on a hub core will not fit there.
    """

    max_recall_drop: float = 0.02
    max_far_increase: float = 0.01
    max_cohort_recall_drop: float = 0.05
    max_cohort_far_increase: float = 0.02
    min_positives: int = 50
    min_negatives: int = 200
    min_cohort_positives: int = 20
    min_cohort_negatives: int = 50
    max_parity_abs_diff: float = 1e-4
    max_parity_flips: int = 0
    latency_budget_ms: float = 5.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"GateConfig.{name} must be a finite non-negative number, got {value!r}")


@dataclass(frozen=True)
class SliceMetrics:
    """One model's metrics on one slice; `n_pos` / `n_neg` count confirmed faults and healthy windows."""

    recall: float
    false_alarm_rate: float
    precision: float
    f1: float
    roc_auc: float | None
    n_pos: int
    n_neg: int

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, float]) -> SliceMetrics:
        """From `models.training.classification_metrics` output (also a manifest's `metrics`)."""
        n, n_pos = int(metrics["n"]), int(metrics["n_positive"])
        auc = metrics.get("roc_auc")
        return cls(
            recall=float(metrics["recall"]),
            false_alarm_rate=float(metrics["false_alarm_rate"]),
            precision=float(metrics["precision"]),
            f1=float(metrics["f1"]),
            roc_auc=None if auc is None else float(auc),
            n_pos=n_pos,
            n_neg=n - n_pos,
        )


@dataclass(frozen=True)
class ParityNumbers:
    """The numbers of an ONNX-vs-scikit-learn parity report (`models.onnx_export.ParityReport`)."""

    max_abs_diff: float
    label_flips: int
    passed: bool


@dataclass(frozen=True)
class GateInput:
    """Everything the gate judges: both models on the same frozen slice, per cohort, parity and latency."""

    candidate: SliceMetrics
    incumbent: SliceMetrics
    parity: ParityNumbers
    latency_p99_ms: float
    candidate_cohorts: Mapping[str, SliceMetrics] = field(default_factory=dict)
    incumbent_cohorts: Mapping[str, SliceMetrics] = field(default_factory=dict)


@dataclass(frozen=True)
class GateCheck:
    """One check and its numbers. `value` must be <= `limit`, except ``min_*`` checks (value >= limit)."""

    name: str
    passed: bool
    value: float
    limit: float
    detail: str


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict, every check it made, and the failures in words."""

    passed: bool
    verdict: Verdict
    checks: tuple[GateCheck, ...]
    reasons: tuple[str, ...]
    candidate: SliceMetrics
    incumbent: SliceMetrics

    def check(self, name: str) -> GateCheck:
        """The check called `name`; KeyError when there is none."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe record (a NaN or infinite number becomes None)."""
        out: dict[str, Any] = _json_safe(asdict(self))
        return out


# Checks whose outcome does not depend on how many rows the slice has.
_DETERMINISTIC = ("same_slice", "parity_abs_diff", "parity_label_flips", "parity_report", "latency_p99_ms")
_SAMPLE = ("min_positives", "min_negatives")


def evaluate_gate(inp: GateInput, cfg: GateConfig | None = None) -> GateDecision:
    """Judge `inp` against `cfg` (default tolerances when None). Pure: same input, same decision.

    >>> m = SliceMetrics(recall=0.9, false_alarm_rate=0.02, precision=0.8, f1=0.85, roc_auc=0.95,
    ...                  n_pos=60, n_neg=400)
    >>> d = evaluate_gate(GateInput(m, m, ParityNumbers(1e-6, 0, True), latency_p99_ms=1.0))
    >>> d.verdict, len(d.checks)
    ('pass', 9)
    """
    cfg = cfg or GateConfig()
    cand, inc = inp.candidate, inp.incumbent
    checks = [
        _at_least("min_positives", cand.n_pos, cfg.min_positives, "confirmed faults in the slice"),
        _at_least("min_negatives", cand.n_neg, cfg.min_negatives, "healthy windows in the slice"),
        _same_slice(cand, inc),
        _drop("recall", cand.recall, inc.recall, cfg.max_recall_drop),
        _rise("false_alarm_rate", cand.false_alarm_rate, inc.false_alarm_rate, cfg.max_far_increase),
        *_cohort_checks(inp.candidate_cohorts, inp.incumbent_cohorts, cfg),
        _at_most("parity_abs_diff", inp.parity.max_abs_diff, cfg.max_parity_abs_diff, "max |ONNX - scikit-learn|"),
        _at_most("parity_label_flips", inp.parity.label_flips, cfg.max_parity_flips, "decision flips ONNX vs sklearn"),
        _at_most("parity_report", 0.0 if inp.parity.passed else 1.0, 0.0, "the parity report's own verdict"),
        _at_most("latency_p99_ms", inp.latency_p99_ms, cfg.latency_budget_ms, "candidate p99 inference latency (ms)"),
    ]
    failed = [c for c in checks if not c.passed]
    hard = [c for c in failed if c.name.split(":")[0] in _DETERMINISTIC]
    small = [c for c in failed if c.name in _SAMPLE]
    verdict: Verdict
    if hard:
        verdict, reasons = "fail", hard + [c for c in failed if c not in hard]
    elif small:
        verdict, reasons = "insufficient_data", small
    else:
        verdict, reasons = ("fail", failed) if failed else ("pass", [])
    return GateDecision(
        passed=verdict == "pass",
        verdict=verdict,
        checks=tuple(checks),
        reasons=tuple(f"{c.name}: {c.detail}" for c in reasons),
        candidate=cand,
        incumbent=inc,
    )


def check_names(cohorts: Iterable[str] = ()) -> tuple[str, ...]:
    """Names of the checks `evaluate_gate` makes, in order, when both models have these cohorts."""
    per_cohort = [f"cohort_{m}:{name}" for name in sorted(cohorts) for m in ("recall", "false_alarm_rate")]
    return (
        "min_positives",
        "min_negatives",
        "same_slice",
        "recall",
        "false_alarm_rate",
        *per_cohort,
        "parity_abs_diff",
        "parity_label_flips",
        "parity_report",
        "latency_p99_ms",
    )


class CohortTables(NamedTuple):
    candidate: dict[str, SliceMetrics]
    incumbent: dict[str, SliceMetrics]


def metrics_on_slice(
    y_true: ArrayLike,
    scores_candidate: ArrayLike,
    scores_incumbent: ArrayLike,
    thresholds: tuple[float, float],
    cohorts: ArrayLike | None = None,
) -> tuple[SliceMetrics, SliceMetrics, CohortTables]:
    """Both models' metrics on one slice, overall and per cohort; `thresholds` is (candidate, incumbent).

    Each model is judged at its own manifest's decision threshold. Without `cohorts` the tables are empty.
    """
    y = np.asarray(y_true)
    s_cand, s_inc = np.asarray(scores_candidate, dtype=np.float64), np.asarray(scores_incumbent, dtype=np.float64)
    if not (y.ndim == 1 and s_cand.shape == y.shape and s_inc.shape == y.shape):
        raise ValueError(f"need one score per label from each model: {y.shape}, {s_cand.shape}, {s_inc.shape}")
    t_cand, t_inc = thresholds
    cand = SliceMetrics.from_metrics(classification_metrics(y, s_cand, t_cand))
    inc = SliceMetrics.from_metrics(classification_metrics(y, s_inc, t_inc))
    if cohorts is None:
        return cand, inc, CohortTables({}, {})
    c = np.asarray(cohorts)
    if c.shape != y.shape:
        raise ValueError(f"need one cohort per label: {c.shape} vs {y.shape}")
    tables = CohortTables(
        {k: SliceMetrics.from_metrics(v) for k, v in cohort_metrics(y, s_cand, t_cand, c).items()},
        {k: SliceMetrics.from_metrics(v) for k, v in cohort_metrics(y, s_inc, t_inc, c).items()},
    )
    return cand, inc, tables


def _cohort_checks(
    cand: Mapping[str, SliceMetrics], inc: Mapping[str, SliceMetrics], cfg: GateConfig
) -> list[GateCheck]:
    checks = []
    for name in sorted(set(cand) | set(inc)):
        c, i = cand.get(name), inc.get(name)
        if c is None or i is None:
            missing = "candidate" if c is None else "incumbent"
            detail = f"cohort {name!r} is missing from the {missing}'s metrics: not the same slice"
            checks.append(GateCheck(f"same_slice:{name}", False, 1.0, 0.0, detail))
            continue
        if c.n_pos >= cfg.min_cohort_positives:
            checks.append(_drop(f"cohort_recall:{name}", c.recall, i.recall, cfg.max_cohort_recall_drop))
        else:
            checks.append(_skipped(f"cohort_recall:{name}", c.n_pos, cfg.min_cohort_positives, "positives"))
        if c.n_neg >= cfg.min_cohort_negatives:
            checks.append(
                _rise(
                    f"cohort_false_alarm_rate:{name}",
                    c.false_alarm_rate,
                    i.false_alarm_rate,
                    cfg.max_cohort_far_increase,
                )
            )
        else:
            checks.append(_skipped(f"cohort_false_alarm_rate:{name}", c.n_neg, cfg.min_cohort_negatives, "negatives"))
    return checks


def _drop(name: str, cand: float, inc: float, tol: float) -> GateCheck:
    drop = inc - cand
    ok = drop <= tol + _EPS  # NaN compares False: fails
    return GateCheck(name, ok, drop, tol, f"candidate {cand:.4f} vs incumbent {inc:.4f}: drop {drop:+.4f}, max {tol}")


def _rise(name: str, cand: float, inc: float, tol: float) -> GateCheck:
    rise = cand - inc
    ok = rise <= tol + _EPS
    return GateCheck(name, ok, rise, tol, f"candidate {cand:.4f} vs incumbent {inc:.4f}: rise {rise:+.4f}, max {tol}")


def _at_most(name: str, value: float, limit: float, what: str) -> GateCheck:
    ok = value <= limit + _EPS
    return GateCheck(name, ok, float(value), float(limit), f"{what} {value:.4g}, max {limit:.4g}")


def _at_least(name: str, value: float, limit: float, what: str) -> GateCheck:
    ok = value >= limit
    return GateCheck(name, ok, float(value), float(limit), f"{what} {value:g}, need {limit:g}")


def _skipped(name: str, n: int, need: int, what: str) -> GateCheck:
    return GateCheck(name, True, math.nan, math.nan, f"not judged: {n} {what} in the cohort, need {need}")


def _same_slice(cand: SliceMetrics, inc: SliceMetrics) -> GateCheck:
    mismatch = abs(cand.n_pos - inc.n_pos) + abs(cand.n_neg - inc.n_neg)
    detail = f"candidate {cand.n_pos}+/{cand.n_neg}- vs incumbent {inc.n_pos}+/{inc.n_neg}-: " + (
        "same slice" if mismatch == 0 else "the models were not scored on the same slice"
    )
    return GateCheck("same_slice", mismatch == 0, float(mismatch), 0.0, detail)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj
