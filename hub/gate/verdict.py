"""The evaluation gate: may a candidate model replace the incumbent? A pure verdict with all its numbers.

Both models are scored on the same frozen evaluation slice. The candidate passes when its recall on
confirmed faults drops and its false-alarm rate rises by no more than set tolerances, overall and in every
cohort large enough to judge, its ONNX artifact scores like the estimator it came from, and its latency is
within budget. Every check is recorded, passed or not, so the decision explains itself.

Windows are not independent: a slice's positives are overlapping windows of a few failures and its
negatives the hours of a few devices, so counting windows overstates the evidence and the point estimates
swing from run to run. The metric checks therefore count and resample *blocks* (a device's time block,
the unit the slice is drawn in: `hub.training.dataset.split_key`) with a paired block bootstrap
(`block_bootstrap`): each cohort's blocks are drawn with replacement, both models are scored on the same
draw, and every metric check records its point regression, its tolerance and the [alpha, 1 - alpha]
percentile interval of the regression.

The rule: a metric check fails when the point regression exceeds its tolerance **and** the one-sided
(1 - alpha) lower bound of the regression is above zero, i.e. the candidate is worse beyond tolerance on
this slice *and* the slice shows it is worse at all, not one unlucky block. Trade-off: a real regression
that the slice cannot tell from noise passes, so the gate's power grows with the number of distinct
failures, and the block minimums turn a slice with too few into ``insufficient_data`` rather than a pass.
Stricter (fail unless the upper bound is within tolerance) would reject most good candidates on a slice of
a dozen failures; looser (fail only when the lower bound exceeds the tolerance) would pass large
regressions on small slices. Without per-window data (`GateInput.paired` None) the gate judges point
estimates only and records no interval.

Verdicts, in order of precedence:

- ``fail`` when a check that does not depend on the slice's size fails (parity, latency, slice mismatch);
- ``insufficient_data`` when the slice has too few positives or negatives, in windows or in distinct
  blocks: metrics on a tiny slice can neither pass nor fail a candidate, and a candidate is never deployed
  on one;
- ``fail`` when a metric check fails;
- ``pass`` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple

from numpy.typing import ArrayLike

from hub.gate.bootstrap import (
    BlockBootstrap,
    PairedSlice,
    block_bootstrap,
    paired_slice,
    per_label,
    scored,
)
from hub.gate.checks import (
    Gains,
    GateCheck,
    at_least,
    at_most,
    block_minimums,
    cohort_checks,
    far_check,
    regression,
    same_slice,
    trades_recall,
)
from models.training import classification_metrics, cohort_metrics

__all__ = [
    "BlockBootstrap", "FarFloor", "GateCheck", "GateConfig", "GateDecision", "GateInput", "PairedSlice",
    "ParityNumbers", "RecallTrade", "SliceMetrics", "TradeRecord",
    "block_bootstrap", "check_names", "evaluate_gate", "metrics_on_slice",
    "paired_slice",
]

Verdict = Literal["pass", "fail", "insufficient_data"]
RecallTrade = Literal["never", "alarm_flood", "always"]
RECALL_TRADES: tuple[RecallTrade, ...] = ("never", "alarm_flood", "always")


@dataclass(frozen=True)
class GateConfig:
    """Tolerances of the gate. The defaults, and why:

    - recall may drop by 0.02 (one missed fault in 50) and the false-alarm rate rise by 0.01 (one extra
      alarm per 100 healthy windows): small enough that a retrain cannot quietly trade faults for alarms;
    - a cohort (site/asset type) may regress by 0.05 in recall and 0.02 in false-alarm rate: cohorts are
      smaller and noisier, but a regression that size on one site is what per-cohort tracking is for;
    - a metric check fails only when the regression exceeds its tolerance and is significant: the
      one-sided 95 % (``alpha`` 0.05) lower bound of the regression, from a paired block bootstrap of
      1000 seeded resamples, is above zero. A FAR rise of 0.02 that comes from one device's bad hour
      passes; the same rise spread over the slice fails. The price: a regression the slice cannot
      separate from noise passes. A block is left out of a resample with probability ~e^-1, so at
      alpha 0.05 a regression confined to one or two blocks (a candidate missing one or two whole
      failures the incumbent caught) never fails on its own, and from three blocks on it can;
    - the slice needs 50 positive and 200 negative windows, in at least 10 distinct blocks each (a block
      is a device's time block: overlapping windows of one failure are one piece of evidence, not 50); a
      cohort is judged from 20 positive / 50 negative windows in at least 5 blocks each, and recorded but
      not judged below that: a percentile bootstrap over fewer blocks cannot tell a regression from one
      unlucky failure;
    - recall and false alarms trade, both ways, on what the candidate *surely* gains (the bound of its
      interval nearer to zero; 0 when it may gain nothing), overall and per cohort (a cohort too small to
      judge trades on the overall gains). Recall gained buys false alarms: the false-alarm tolerance grows
      by ``far_per_recall_gain`` (0.1) × the recall gained, because after drift the incumbent's low
      false-alarm rate is often blindness (a fix catching 30 % more failures may raise 0.01 + 0.03 more
      alarms). False alarms removed buy recall: the recall tolerance grows by ``recall_per_far_reduction``
      (0.5) × the false-alarm rate removed, at most ``max_traded_recall_drop`` (0.25), because an incumbent
      that alarms on most healthy windows has a recall that means little (NASA C-MAPSS FD002 under an FD001
      model: recall 0.98 at a false-alarm rate of 0.6). The cap keeps a model that never alarms from
      passing on the false alarms it no longer raises. Set the rates to 0 to turn the trade off;
    - whether recall may be bought with false alarms at all is the named setting ``recall_trade``, recorded
      with every decision (`TradeRecord`). In maintenance a missed failure costs far more than a false
      alarm, so the default, ``alarm_flood``, buys recall only from an incumbent flooding its users with
      alarms (a false-alarm rate of at least ``alarm_flood_far``, 0.3, on the slice or the cohort): its
      recall is that of a model alarming on nearly everything. Against any other incumbent the candidate's
      recall may drop by the plain tolerance only (significance as for every metric check): a candidate
      catching 0.598 of the failures against 0.641 fails however many false alarms it removes.
      ``never`` never trades; ``always`` trades whatever the incumbent's false alarms (this gate's
      behaviour before the setting existed);
    - after drift, false alarms are measured from the incumbent's rate *before* it drifted when that is
      higher (``far_floor_after_drift``, `FarFloor`, `hub.training.far_floor`): drift that blinds a model
      lowers its false alarms with its recall, and a fix that only brings them back to where they were
      must not read as a regression (on this project's simulated fleet, a recalibration took one site's
      false-alarm rate from 0.037 to 0.001, and every fix failed that site's check against 0.001);
    - parity as in models/onnx_export.py: max |ONNX - scikit-learn| 1e-4 and no decision flips;
    - 5 ms p99 per single-window inference, measured on the hub: the agent targets 2 ms on a gateway
      core (bench/agent.py), and a model already slow on a hub core will not fit there.
    """

    max_recall_drop: float = 0.02
    max_far_increase: float = 0.01
    max_cohort_recall_drop: float = 0.05
    max_cohort_far_increase: float = 0.02
    far_per_recall_gain: float = 0.1
    recall_per_far_reduction: float = 0.5
    max_traded_recall_drop: float = 0.25
    recall_trade: RecallTrade = "alarm_flood"
    alarm_flood_far: float = 0.3
    min_positives: int = 50
    min_negatives: int = 200
    min_cohort_positives: int = 20
    min_cohort_negatives: int = 50
    min_positive_blocks: int = 10
    min_negative_blocks: int = 10
    min_cohort_positive_blocks: int = 5
    min_cohort_negative_blocks: int = 5
    alpha: float = 0.05
    bootstrap_resamples: int = 1000
    bootstrap_seed: int = 0
    max_parity_abs_diff: float = 1e-4
    max_parity_flips: int = 0
    latency_budget_ms: float = 5.0
    far_floor_after_drift: bool = True

    def __post_init__(self) -> None:
        if self.recall_trade not in RECALL_TRADES:
            raise ValueError(f"GateConfig.recall_trade must be one of {', '.join(RECALL_TRADES)}, got "
                             f"{self.recall_trade!r}")
        for name, value in asdict(self).items():
            if name == "recall_trade":
                continue
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"GateConfig.{name} must be a finite non-negative number, got {value!r}")
        if not 0 < self.alpha <= 0.5:
            raise ValueError(f"GateConfig.alpha must be in (0, 0.5], got {self.alpha!r}")
        if self.bootstrap_resamples < 100:
            raise ValueError(f"GateConfig.bootstrap_resamples must be at least 100, got {self.bootstrap_resamples!r}")


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
class FarFloor:
    """The incumbent's false-alarm rate on the fleet before its current drift began (at `onset`), overall and
    per cohort, from `negatives` healthy windows (key "" overall): a false-alarm rise is measured from the
    larger of this and the incumbent's rate on the slice. None overall, or a cohort missing: too few windows."""

    version: str
    onset: float
    overall: float | None
    cohorts: Mapping[str, float] = field(default_factory=dict)
    negatives: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class GateInput:
    """Everything the gate judges: both models on the same frozen slice, per cohort, parity and latency.

    `paired` (the same slice per window, with blocks) gives the metric checks their intervals; without it
    they judge point estimates only. `far_floor`: set when the incumbent drifted (see `GateConfig`).
    """

    candidate: SliceMetrics
    incumbent: SliceMetrics
    parity: ParityNumbers
    latency_p99_ms: float
    candidate_cohorts: Mapping[str, SliceMetrics] = field(default_factory=dict)
    incumbent_cohorts: Mapping[str, SliceMetrics] = field(default_factory=dict)
    paired: PairedSlice | None = None
    far_floor: FarFloor | None = None


@dataclass(frozen=True)
class BootstrapSummary:
    """How the metric checks' intervals were made, recorded with the decision."""

    method: str
    resamples: int
    seed: int
    alpha: float
    interval_level: float  # of the two-sided [alpha, 1 - alpha] interval: 1 - 2 * alpha
    n_blocks: int
    positive_blocks: int
    negative_blocks: int


@dataclass(frozen=True)
class TradeRecord:
    """The recall / false-alarm trade as this decision applied it (overall; cohorts follow the same rule on
    their own incumbent's false alarms): the setting, whether it applied, and what each side bought."""

    recall_trade: RecallTrade
    alarm_flood_far: float
    incumbent_far: float
    applied: bool  # false alarms removed were allowed to buy recall
    recall_bought: float  # added to the recall-drop tolerance
    far_bought: float  # added to the false-alarm-rise tolerance by the recall surely gained
    reason: str


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict, every check it made, and the failures in words."""

    passed: bool
    verdict: Verdict
    checks: tuple[GateCheck, ...]
    reasons: tuple[str, ...]
    candidate: SliceMetrics
    incumbent: SliceMetrics
    bootstrap: BootstrapSummary | None = None
    trade: TradeRecord | None = None

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


# --- the verdict -----------------------------------------------------------------------------------------

# Checks whose outcome does not depend on how many rows the slice has.
_DETERMINISTIC = ("same_slice", "parity_abs_diff", "parity_label_flips", "parity_report", "latency_p99_ms")
_SAMPLE = ("min_positives", "min_negatives", "min_positive_blocks", "min_negative_blocks")


def evaluate_gate(inp: GateInput, cfg: GateConfig | None = None) -> GateDecision:
    """Judge `inp` against `cfg` (default tolerances when None). Pure: same input, same decision.

    >>> m = SliceMetrics(recall=0.9, false_alarm_rate=0.02, precision=0.8, f1=0.85, roc_auc=0.95,
    ...                  n_pos=60, n_neg=400)
    >>> d = evaluate_gate(GateInput(m, m, ParityNumbers(1e-6, 0, True), latency_p99_ms=1.0))
    >>> d.verdict, len(d.checks), d.bootstrap
    ('pass', 11, None)
    """
    cfg = cfg or GateConfig()
    cand, inc = inp.candidate, inp.incumbent
    boot = None if inp.paired is None else block_bootstrap(inp.paired, resamples=cfg.bootstrap_resamples,
                                                           seed=cfg.bootstrap_seed)
    whole = None if boot is None else boot.overall
    gains = Gains.of(cand, inc, whole, cfg.alpha)
    recall_tol, far_tol = gains.tolerances(cfg.max_recall_drop, cfg.max_far_increase, cfg, inc.false_alarm_rate)
    floor = inp.far_floor if cfg.far_floor_after_drift else None
    checks = [
        at_least("min_positives", cand.n_pos, cfg.min_positives, "confirmed faults in the slice"),
        at_least("min_negatives", cand.n_neg, cfg.min_negatives, "healthy windows in the slice"),
        *block_minimums(whole, cfg),
        same_slice(cand, inc, inp.paired),
        regression("recall", "drop", cand.recall, inc.recall, recall_tol, cfg.alpha,
                    None if whole is None else (whole.recall_drop, whole.positive_blocks)),
        far_check("false_alarm_rate", cand.false_alarm_rate, inc.false_alarm_rate, far_tol, cfg.alpha, whole,
                   None if floor is None else floor.overall),
        *cohort_checks(inp.candidate_cohorts, inp.incumbent_cohorts, cfg, boot, gains,
                        {} if floor is None else floor.cohorts),
        at_most("parity_abs_diff", inp.parity.max_abs_diff, cfg.max_parity_abs_diff, "max |ONNX - scikit-learn|"),
        at_most("parity_label_flips", inp.parity.label_flips, cfg.max_parity_flips, "decision flips ONNX vs sklearn"),
        at_most("parity_report", 0.0 if inp.parity.passed else 1.0, 0.0, "the parity report's own verdict"),
        at_most("latency_p99_ms", inp.latency_p99_ms, cfg.latency_budget_ms, "candidate p99 inference latency (ms)"),
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
    summary = None if boot is None else BootstrapSummary(
        method="paired_block", resamples=cfg.bootstrap_resamples, seed=cfg.bootstrap_seed, alpha=cfg.alpha,
        interval_level=1.0 - 2.0 * cfg.alpha, n_blocks=boot.n_blocks,
        positive_blocks=boot.overall.positive_blocks, negative_blocks=boot.overall.negative_blocks,
    )
    return GateDecision(
        passed=verdict == "pass",
        verdict=verdict,
        checks=tuple(checks),
        reasons=tuple(f"{c.name}: {c.detail}" for c in reasons),
        candidate=cand,
        incumbent=inc,
        bootstrap=summary,
        trade=_trade(cfg, gains, inc.false_alarm_rate),
    )


def _trade(cfg: GateConfig, gains: Gains, incumbent_far: float) -> TradeRecord:
    applied = trades_recall(cfg, incumbent_far)
    bought = gains.recall_bought(cfg, incumbent_far)
    if cfg.recall_trade == "never":
        why = "recall_trade 'never': no recall is bought with false alarms"
    elif cfg.recall_trade == "always":
        why = f"recall_trade 'always': {gains.far:.4f} false-alarm rate surely removed buys {bought:.4f} recall"
    elif applied:
        why = (f"the incumbent floods (false-alarm rate {incumbent_far:.4f} >= {cfg.alarm_flood_far:g}): "
               f"{gains.far:.4f} surely removed buys {bought:.4f} recall")
    else:
        why = (f"the incumbent does not flood (false-alarm rate {incumbent_far:.4f} < {cfg.alarm_flood_far:g}): "
               "its recall may drop by the plain tolerance only")
    return TradeRecord(cfg.recall_trade, cfg.alarm_flood_far, incumbent_far, applied, bought,
                       cfg.far_per_recall_gain * gains.recall, why)


def check_names(cohorts: Iterable[str] = ()) -> tuple[str, ...]:
    """Names of the checks `evaluate_gate` makes, in order, when both models have these cohorts."""
    per_cohort = [f"cohort_{m}:{name}" for name in sorted(cohorts) for m in ("recall", "false_alarm_rate")]
    return (
        "min_positives",
        "min_negatives",
        "min_positive_blocks",
        "min_negative_blocks",
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
    y, s_cand, s_inc = scored(y_true, scores_candidate, scores_incumbent)
    t_cand, t_inc = thresholds
    cand = SliceMetrics.from_metrics(classification_metrics(y, s_cand, t_cand))
    inc = SliceMetrics.from_metrics(classification_metrics(y, s_inc, t_inc))
    if cohorts is None:
        return cand, inc, CohortTables({}, {})
    c = per_label(cohorts, y, "cohort")
    tables = CohortTables(
        {k: SliceMetrics.from_metrics(v) for k, v in cohort_metrics(y, s_cand, t_cand, c).items()},
        {k: SliceMetrics.from_metrics(v) for k, v in cohort_metrics(y, s_inc, t_inc, c).items()},
    )
    return cand, inc, tables


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj
