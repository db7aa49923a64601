"""Realized performance: how each model version does on the labels that come back, against its gate-time figures.

A version's failures may stop being caught without its inputs drifting (a new failure mode, a fault that starts
to look different): no drift verdict fires. The labels say so. For every model version and cohort the monitor
joins the validated labels to the decisions that version served on them (`LabelItemRow.model_version`, the
prediction's `decision`):

- **recall** on confirmed failures (``fault`` labels the version alarmed on), and the **missed failures**
  (confirmed failures it served no alarm on);
- **false-alarm rate** on windows confirmed healthy;

and tests each against the figure the version was deployed on: its gate decision's candidate figures (a
version registered without a gate: its manifest's test metrics). The test is sequential (Wald's SPRT), so it
can be run after every new label without inflating false verdicts: for recall, H0 "recall is the gate's"
against H1 "recall is `recall_drop` lower"; for false alarms, H0 "the gate's rate" against H1 "`far_rise`
higher". The log-likelihood ratio crossing ``log((1 - beta) / alpha)`` is ``degraded``; crossing
``log(beta / (1 - alpha))`` is ``ok`` (H0 accepted); in between ``undecided``. Labels of one failure are
overlapping windows, not independent trials: at most `max_per_block` labels of one device × `block_s` time
block (data time) count, so one long failure cannot decide alone; which ones is a draw by trace-id hash.

A ``degraded`` verdict is recorded once per (version, scope) as a `PERFORMANCE_EVENT` (hub event log, like
drift's) by `hub.training.service.performance.monitor`, and the trigger job counts it as a retrain trigger
(``performance``). Pure.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.store.rows import LabelItemRow, ModelVersionRow, PredictionRow

PERFORMANCE_EVENT = "performance_degraded"
Verdict = Literal["ok", "degraded", "undecided", "no_reference"]


class PerformanceSettings(BaseModel):
    """The sequential test (``HubSettings.training.performance``). Defaults, and why: a recall 0.15 below the gate's
    is a model missing one failure in seven more than it was deployed on (worth a retrain); a false-alarm rate
    0.05 above it one extra alarm per 20 healthy windows; alpha 0.01 because the test runs on every check, and
    beta 0.1; at most 5 labels of one device's block count (overlapping windows of one failure are one piece of
    evidence, not fifty). The label-free estimates (`hub.training.estimate`) use the last week of the random slice
    and need 30 of its windows per version and scope (fewer: ``too_few_samples``, the figures would be noise)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    recall_drop: float = Field(default=0.15, gt=0, lt=1, allow_inf_nan=False)
    far_rise: float = Field(default=0.05, gt=0, lt=1, allow_inf_nan=False)
    alpha: float = Field(default=0.01, gt=0, lt=0.5, allow_inf_nan=False)
    beta: float = Field(default=0.1, gt=0, lt=0.5, allow_inf_nan=False)
    block_s: float = Field(default=3600.0, gt=0, allow_inf_nan=False, description="evidence block (data time)")
    max_per_block: int = Field(default=5, ge=1, description="labels of one device × block that count")
    estimate_window_s: float = Field(default=7 * 86400.0, gt=0, allow_inf_nan=False, description="label-free "
                                     "estimates (hub.training.estimate) are over the random samples of this long")
    estimate_min_samples: int = Field(default=30, ge=1, description="random-sample windows a version and scope "
                                      "need before its performance is estimated")


@dataclass(frozen=True)
class MetricTest:
    """One metric's sequential test: observed `hits` of `n` trials against the expected rate `p0`."""

    n: int
    hits: int
    observed: float | None
    expected: float | None
    alternative: float | None
    llr: float
    verdict: Verdict


@dataclass(frozen=True)
class RealizedPerformance:
    """One version in one scope (``fleet`` or ``cohort:<name>``): what the labels say and the tests' verdicts."""

    version: str
    scope: str
    failures: int  # confirmed failures labelled on windows this version served
    missed: int  # of them, served no alarm
    healthy: int
    false_alarms: int
    recall: MetricTest
    false_alarm_rate: MetricTest
    verdict: Verdict
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return json_finite(asdict(self))


def sprt_llr(hits: int, n: int, p0: float, p1: float) -> float:
    """Log-likelihood ratio of H1 (rate `p1`) over H0 (rate `p0`) after `hits` of `n` Bernoulli trials.

    >>> round(sprt_llr(5, 10, 0.9, 0.75), 3)
    5.014
    """
    p0, p1 = min(max(p0, 1e-6), 1 - 1e-6), min(max(p1, 1e-6), 1 - 1e-6)
    return hits * math.log(p1 / p0) + (n - hits) * math.log((1 - p1) / (1 - p0))


def metric_test(hits: int, n: int, expected: float | None, shift: float, s: PerformanceSettings) -> MetricTest:
    """`shift` < 0 tests a drop (recall), > 0 a rise (false alarms).

    >>> metric_test(20, 40, 0.9, -0.15, PerformanceSettings()).verdict
    'degraded'
    >>> metric_test(39, 40, 0.9, -0.15, PerformanceSettings()).verdict
    'ok'
    """
    observed = hits / n if n else None
    if expected is None or not math.isfinite(expected):
        return MetricTest(n, hits, observed, None, None, 0.0, "no_reference")
    alternative = min(max(expected + shift, 1e-6), 1 - 1e-6)
    llr = sprt_llr(hits, n, expected, alternative)
    upper, lower = math.log((1 - s.beta) / s.alpha), math.log(s.beta / (1 - s.alpha))
    verdict: Verdict = "degraded" if llr >= upper else "ok" if llr <= lower else "undecided"
    return MetricTest(n, hits, observed, expected, alternative, llr, verdict)


def gate_time_figures(row: ModelVersionRow) -> tuple[float | None, float | None]:
    """The (recall, false-alarm rate) a version was deployed on: its gate decision's candidate figures, else its
    manifest's test metrics; None where neither has one."""
    gate = row.gate or {}
    source = gate.get("candidate") if isinstance(gate.get("candidate"), Mapping) else None
    if source is None or source.get("recall") is None:
        source = (row.manifest or {}).get("metrics") or {}
    recall, far = source.get("recall"), source.get("false_alarm_rate")
    return (None if recall is None else float(recall)), (None if far is None else float(far))


def realized(items: Sequence[LabelItemRow], predictions: Mapping[str, PredictionRow],
             expected: Mapping[str, tuple[float | None, float | None]], settings: PerformanceSettings,
             ) -> list[RealizedPerformance]:
    """Every (version, scope) with labels: fleet-wide and per cohort, sorted by version then scope."""
    seen: dict[tuple[str, str, str, int], int] = defaultdict(int)
    tally: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # failures, caught, healthy, alarms
    for item in sorted(items, key=_draw_order):
        p = predictions.get(item.trace_id)
        version = (p.model_version if p is not None else None) or item.model_version
        if p is None or version is None:
            continue
        block = (p.device_id, version, str(item.label), math.floor(p.window_end / settings.block_s))
        seen[block] += 1
        if seen[block] > settings.max_per_block:
            continue
        for scope in ("fleet", f"cohort:{item.cohort or 'unknown'}"):
            t = tally[(version, scope)]
            if item.label:
                t[0] += 1
                t[1] += bool(p.decision)
            else:
                t[2] += 1
                t[3] += bool(p.decision)
    out = []
    for (version, scope), (failures, caught, healthy, alarms) in sorted(tally.items()):
        exp_recall, exp_far = expected.get(version, (None, None))
        recall = metric_test(failures - caught, failures, None if exp_recall is None else 1 - exp_recall,
                             settings.recall_drop, settings)  # misses: a rise of 1 - recall
        recall = MetricTest(recall.n, caught, None if not failures else caught / failures, exp_recall,
                            None if recall.alternative is None else 1 - recall.alternative, recall.llr,
                            recall.verdict)
        far = metric_test(alarms, healthy, exp_far, settings.far_rise, settings)
        out.append(RealizedPerformance(version, scope, failures, failures - caught, healthy, alarms, recall, far,
                                       *_overall(recall, far)))
    return out


def _draw_order(item: LabelItemRow) -> bytes:
    """The order a block's labels are counted in: a hash of the trace id, so the `max_per_block` that count are a
    fair draw of the block's labels, not the first ones (by time): the first healthy windows after a repair span
    the failure and alarm, and counting them first read a healthy v1's false-alarm rate on one compressor at 0.185
    against 0.039 over all of its labels (the new-failure-mode story)."""
    return hashlib.sha256(item.trace_id.encode()).digest()


def _overall(recall: MetricTest, far: MetricTest) -> tuple[Verdict, str]:
    bad = [f"{name} {t.observed:.3f} against {t.expected:.3f} at deployment ({t.n} labels, LLR {t.llr:.2f})"
           for name, t in (("recall", recall), ("false-alarm rate", far)) if t.verdict == "degraded"
           and t.observed is not None and t.expected is not None]
    if bad:
        return "degraded", "; ".join(bad)
    verdicts = {recall.verdict, far.verdict}
    if verdicts == {"no_reference"}:
        return "no_reference", "no gate-time figures to compare with"
    if "undecided" in verdicts:
        return "undecided", "not enough labels to tell"
    return "ok", "consistent with the gate-time figures"


def json_finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_finite(v) for k, v in obj.items()}
    return obj
