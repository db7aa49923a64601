"""The gate's checks, one `GateCheck` each: the block minimums, the metric regressions with their bootstrap
intervals (and the recall / false-alarm trade and the false-alarm floor after drift), and the plain limits.
`hub.gate.verdict.evaluate_gate` puts them together; see `hub.gate.verdict` for the rule and `GateConfig` for
the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hub.gate.bootstrap import BlockBootstrap, PairedSlice, Resampled, interval

if TYPE_CHECKING:
    from hub.gate.verdict import GateConfig, SliceMetrics

_EPS = 1e-9
"""Slack on every comparison, so 0.95 - 1.0 (= -0.0500000000000000444) does not exceed a 0.05 tolerance."""


@dataclass(frozen=True)
class GateCheck:
    """One check and its numbers. `value` must be <= `limit`, except ``min_*`` checks (value >= limit).

    Metric checks judged with a bootstrap also carry the [alpha, 1 - alpha] interval of `value` (the
    regression) and the number of distinct blocks behind it (positive blocks for recall, negative for FAR).
    """

    name: str
    passed: bool
    value: float
    limit: float
    detail: str
    ci_low: float = math.nan
    ci_high: float = math.nan
    blocks: int | None = None



def block_minimums(whole: Resampled | None, cfg: GateConfig) -> list[GateCheck]:
    if whole is None:
        why = "not judged: no per-window slice with blocks, point estimates only"
        return [GateCheck("min_positive_blocks", True, math.nan, float(cfg.min_positive_blocks), why),
                GateCheck("min_negative_blocks", True, math.nan, float(cfg.min_negative_blocks), why)]
    return [
        at_least("min_positive_blocks", whole.positive_blocks, cfg.min_positive_blocks,
                  "distinct blocks (device × time block) with a confirmed fault"),
        at_least("min_negative_blocks", whole.negative_blocks, cfg.min_negative_blocks,
                  "distinct blocks with a healthy window"),
    ]


def cohort_checks(
    cand: Mapping[str, SliceMetrics], inc: Mapping[str, SliceMetrics], cfg: GateConfig, boot: BlockBootstrap | None,
    overall: Gains, far_floors: Mapping[str, float],
) -> list[GateCheck]:
    """Each cohort's recall and false-alarm checks, or why it is not judged. The trade between the two uses the
    cohort's own sure gains where it has enough blocks to judge them, the slice's overall gains otherwise."""
    checks = []
    for name in sorted(set(cand) | set(inc)):
        c, i = cand.get(name), inc.get(name)
        part = None if boot is None else boot.cohorts.get(name)
        if c is None or i is None or (boot is not None and part is None):
            missing = "candidate's metrics" if c is None else "incumbent's metrics" if i is None else "per-window slice"
            detail = f"cohort {name!r} is missing from the {missing}: not the same slice"
            checks.append(GateCheck(f"same_slice:{name}", False, 1.0, 0.0, detail))
            continue
        pos_blocks, neg_blocks = (None, None) if part is None else (part.positive_blocks, part.negative_blocks)
        judge_recall = _enough(c.n_pos, pos_blocks, cfg.min_cohort_positives, cfg.min_cohort_positive_blocks)
        judge_far = _enough(c.n_neg, neg_blocks, cfg.min_cohort_negatives, cfg.min_cohort_negative_blocks)
        own = Gains.of(c, i, part, cfg.alpha)
        gains = Gains(own.recall if judge_recall else overall.recall, own.far if judge_far else overall.far)
        recall_tol, far_tol = gains.tolerances(cfg.max_cohort_recall_drop, cfg.max_cohort_far_increase, cfg,
                                               i.false_alarm_rate)
        if judge_recall:
            checks.append(regression(f"cohort_recall:{name}", "drop", c.recall, i.recall, recall_tol, cfg.alpha,
                                      None if part is None else (part.recall_drop, part.positive_blocks)))
        else:
            checks.append(_skipped(f"cohort_recall:{name}", c.n_pos, pos_blocks, cfg.min_cohort_positives,
                                   cfg.min_cohort_positive_blocks, "positives"))
        if judge_far:
            checks.append(far_check(f"cohort_false_alarm_rate:{name}", c.false_alarm_rate, i.false_alarm_rate,
                                     far_tol, cfg.alpha, part, far_floors.get(name)))
        else:
            checks.append(_skipped(f"cohort_false_alarm_rate:{name}", c.n_neg, neg_blocks, cfg.min_cohort_negatives,
                                   cfg.min_cohort_negative_blocks, "negatives"))
    return checks


@dataclass(frozen=True)
class Gains:
    """What the candidate surely gains over the incumbent: recall, and false alarms removed (0 when it may not)."""

    recall: float
    far: float

    @classmethod
    def of(cls, cand: SliceMetrics, inc: SliceMetrics, resampled: Resampled | None, alpha: float) -> Gains:
        """From the upper bounds of the regressions (the point regressions without a bootstrap).

        >>> from hub.gate.verdict import SliceMetrics
        >>> m = SliceMetrics(recall=0.4, false_alarm_rate=0.6, precision=0.5, f1=0.4, roc_auc=0.8, n_pos=9, n_neg=9)
        >>> from dataclasses import replace
        >>> g = Gains.of(replace(m, recall=0.7, false_alarm_rate=0.1), m, None, 0.05)
        >>> round(g.recall, 3), round(g.far, 3)
        (0.3, 0.5)
        """
        draws = (None, None) if resampled is None else (resampled.recall_drop, resampled.far_rise)
        return cls(_sure_gain(inc.recall - cand.recall, draws[0], alpha),
                   _sure_gain(cand.false_alarm_rate - inc.false_alarm_rate, draws[1], alpha))

    def tolerances(self, max_recall_drop: float, max_far_increase: float, cfg: GateConfig,
                   incumbent_far: float) -> tuple[float, float]:
        """The recall-drop and false-alarm-rise tolerances after the trade (see `GateConfig`); recall is bought
        with false alarms removed only as `GateConfig.recall_trade` allows (`trades_recall`).

        >>> from hub.gate.verdict import GateConfig
        >>> [round(t, 4) for t in Gains(recall=0.3, far=0.0).tolerances(0.02, 0.01, GateConfig(), 0.01)]
        [0.02, 0.04]
        >>> [round(t, 4) for t in Gains(recall=0.0, far=0.55).tolerances(0.02, 0.01, GateConfig(), 0.6)]
        [0.27, 0.01]
        >>> [round(t, 4) for t in Gains(recall=0.0, far=0.1).tolerances(0.02, 0.01, GateConfig(), 0.12)]
        [0.02, 0.01]
        """
        return max_recall_drop + self.recall_bought(cfg, incumbent_far), \
            max_far_increase + cfg.far_per_recall_gain * self.recall

    def recall_bought(self, cfg: GateConfig, incumbent_far: float) -> float:
        """The recall drop the false alarms surely removed buy (0 when `recall_trade` does not allow it)."""
        if not trades_recall(cfg, incumbent_far):
            return 0.0
        return min(cfg.max_traded_recall_drop, cfg.recall_per_far_reduction * self.far)


def trades_recall(cfg: GateConfig, incumbent_far: float) -> bool:
    """Whether false alarms removed may buy recall against an incumbent alarming at `incumbent_far`:
    ``never``: no; ``always``: yes; ``alarm_flood`` (the default): only when the incumbent alarms on at least
    `GateConfig.alarm_flood_far` of the healthy windows, where its recall says little (it alarms on nearly
    everything).

    >>> from hub.gate.verdict import GateConfig
    >>> [trades_recall(GateConfig(recall_trade=t), 0.1) for t in ("never", "alarm_flood", "always")]
    [False, False, True]
    >>> trades_recall(GateConfig(), 0.6)
    True
    """
    if cfg.recall_trade == "always":
        return True
    return cfg.recall_trade == "alarm_flood" and incumbent_far >= cfg.alarm_flood_far - _EPS


def _sure_gain(regression: float, draws: np.ndarray | None, alpha: float) -> float:
    """Minus the worst plausible regression (the interval's upper bound), floored at 0; 0 for NaN."""
    worst = regression if draws is None else interval(draws, alpha)[1]
    return max(0.0, -worst) if math.isfinite(worst) else 0.0


def _enough(n: int, blocks: int | None, need: int, need_blocks: int) -> bool:
    return n >= need and (blocks is None or blocks >= need_blocks)


def far_check(name: str, cand: float, inc: float, tol: float, alpha: float, part: Resampled | None,
               floor: float | None) -> GateCheck:
    """A false-alarm check, from max(incumbent, `floor`) when the incumbent drifted (in every resample too)."""
    draws = None if part is None else (part.far_rise, part.negative_blocks)
    if floor is None:
        return regression(name, "rise", cand, inc, tol, alpha, draws)
    if part is not None:
        far_cand = part.far_rise + part.far_incumbent
        draws = (far_cand - np.maximum(part.far_incumbent, floor), part.negative_blocks)
    if floor > inc:
        note = f" before its drift ({inc:.4f} on the slice)"
        return regression(name, "rise", cand, floor, tol, alpha, draws, note=note)
    return regression(name, "rise", cand, inc, tol, alpha, draws, note=f" (before its drift: {floor:.4f})")


def regression(
    name: str, what: str, cand: float, inc: float, tol: float, alpha: float,
    resampled: tuple[np.ndarray, int] | None, *, note: str = "",
) -> GateCheck:
    """A metric check: `what` is "drop" (higher is better) or "rise" (lower is better).

    Fails when the point regression exceeds `tol` and, with `resampled` (the bootstrap's regressions and
    their block count), the (1 - alpha) lower bound is above zero too. NaN fails. `note` follows the
    incumbent's number in the detail.
    """
    regression = inc - cand if what == "drop" else cand - inc
    over = not regression <= tol + _EPS  # NaN compares False: over
    detail = f"candidate {cand:.4f} vs incumbent {inc:.4f}{note}: {what} {regression:+.4f}, max {tol:.4f}"
    if resampled is None:
        return GateCheck(name, not over, regression, tol, detail)
    draws, blocks = resampled
    lo, hi = interval(draws, alpha)
    worse = not lo <= _EPS  # no interval (NaN): taken as worse
    detail += f"; {1 - 2 * alpha:.0%} interval [{lo:+.4f}, {hi:+.4f}] over {blocks} blocks"
    if over:
        detail += ": significantly worse" if worse else ": within noise (lower bound not above 0)"
    return GateCheck(name, not (over and worse), regression, tol, detail, lo, hi, blocks)


def at_most(name: str, value: float, limit: float, what: str) -> GateCheck:
    ok = value <= limit + _EPS
    return GateCheck(name, ok, float(value), float(limit), f"{what} {value:.4g}, max {limit:.4g}")


def at_least(name: str, value: float, limit: float, what: str) -> GateCheck:
    ok = value >= limit
    return GateCheck(name, ok, float(value), float(limit), f"{what} {value:g}, need {limit:g}")


def _skipped(name: str, n: int, blocks: int | None, need: int, need_blocks: int, what: str) -> GateCheck:
    have, want = (f"{n}", f"{need}") if blocks is None else (f"{n} in {blocks} blocks", f"{need} in {need_blocks}")
    return GateCheck(name, True, math.nan, math.nan, f"not judged: {have} {what} in the cohort, need {want}",
                     blocks=blocks)


def same_slice(cand: SliceMetrics, inc: SliceMetrics, paired: PairedSlice | None) -> GateCheck:
    mismatch = abs(cand.n_pos - inc.n_pos) + abs(cand.n_neg - inc.n_neg)
    detail = f"candidate {cand.n_pos}+/{cand.n_neg}- vs incumbent {inc.n_pos}+/{inc.n_neg}-"
    if paired is not None:
        n_pos = int(paired.y.sum())
        n_neg = int(paired.y.size) - n_pos
        mismatch += abs(n_pos - cand.n_pos) + abs(n_neg - cand.n_neg)
        detail += f" vs per window {n_pos}+/{n_neg}-"
    detail += ": " + ("same slice" if mismatch == 0 else "the models were not scored on the same slice")
    return GateCheck("same_slice", mismatch == 0, float(mismatch), 0.0, detail)
