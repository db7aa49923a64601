"""Judge one stage's evidence: reasons to roll back now (failures), reasons not to advance yet (holds).

Failures are faults no amount of waiting fixes: a device refused the candidate, failed its health check or
rolled it back itself, NaN scores, inference errors, an anomaly rate far off the control's. Holds are
missing or not-yet-good-enough evidence: devices silent or short of windows, latency over budget, the
score distribution too far from the control's, too much shadow disagreement, an anomaly rate somewhat off.

The anomaly-rate and score-distribution rules need a yardstick. It is the control (the incumbent's numbers)
while the control is trusted; when it is not (`ControlTrust`: the incumbent drifted) and there is an
`Expectation` of the candidate, the candidate is judged against it instead (its scores on the stage's traffic,
measured by the service, else its manifest's reference), and shadow disagreement with the broken incumbent no
longer holds the stage. The device failures (refusals, failed
health checks, self-rollbacks, NaN scores, inference errors) do not depend on any yardstick. A refusal that
is only a failed download counts as an infrastructure failure too (``infra_failures``): a rollback made of
nothing else may be retried (`hub.rollout.revert`).

Whatever the yardstick, the candidate's label-free `Estimate` on the stage's traffic (its calibrated scores on the
vectors the devices sent) is recorded, and holds the stage when its recall or F1 falls more than
`estimate_max_drop` below what the candidate's gate-time figures give on that traffic: a hold, never a failure by
itself (an estimate is weaker evidence than labels, and least sure under the covariate drift that rollouts follow:
a stage held by it alone until its timeout is paused for an operator, not rolled back, `hub.rollout.machine`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from hub.drift.psi import psi
from hub.rollout.errors import RolloutError
from hub.rollout.evidence import (
    ControlTrust,
    DeviceSummary,
    Estimate,
    Evidence,
    Expectation,
    Scoring,
    Yardstick,
    pool,
)
from hub.rollout.plan import HealthLimits, StagePlan
from hub.rollout.revert import fetch_failure
from hub.training.estimate import rates


@dataclass(frozen=True)
class Assessment:
    """What the evidence says about a stage; `control` is the live control when it was large enough;
    `yardstick` what the anomaly rate and score distribution were judged against, and why; `estimate` the
    candidate's label-free performance on the stage's traffic (or why there is none)."""

    failures: tuple[str, ...]
    holds: tuple[str, ...]
    numbers: Mapping[str, float]
    devices: tuple[DeviceSummary, ...]
    control: Scoring | None
    yardstick: Yardstick | None = None
    estimate: Estimate | None = None
    label_free_holds: tuple[str, ...] = ()  # the holds the label-free estimate alone makes (also in `holds`)

    @property
    def healthy(self) -> bool:
        return not self.failures and not self.holds


def assess(
    stage: StagePlan,
    limits: HealthLimits,
    evidence: Mapping[str, Evidence],
    fallback_control: Scoring | None,
    *,
    trust: ControlTrust | None = None,
    expectation: Expectation | None = None,
    estimate: Estimate | None = None,
) -> Assessment:
    """Judge the stage's devices on `evidence` (devices outside the stage only feed the control).

    The control pools every `Evidence.incumbent`; when it has fewer than `limits.min_rate_windows`
    windows, `fallback_control` (the last live control, or the plan's baseline) stands in. When `trust`
    says the control is not trusted and there is an `expectation`, that is the yardstick instead. An `estimate`
    (the candidate's label-free figures on the stage's traffic) is recorded and may hold (`estimate_holds`).
    """
    policy, inside = stage.policy, set(stage.devices)
    failures: list[str] = []
    summaries: list[DeviceSummary] = []
    slow: list[float] = []
    failed = loaded = ready = silent = unfetched = 0
    for device in stage.devices:
        ev = evidence.get(device)
        if ev is None:
            silent += 1
            summaries.append(DeviceSummary(device))
            continue
        cand = ev.candidate or Scoring()
        problem = _device_failure(ev, cand, limits)
        if problem is not None:
            failed += 1
            unfetched += _could_not_fetch(ev, cand)
            failures.append(f"{device}: {problem}")
        if cand.latency_p99_ms is not None and cand.latency_p99_ms > limits.latency_p99_ms:
            slow.append(cand.latency_p99_ms)
            problem = problem or f"p99 latency {cand.latency_p99_ms:g} ms over {limits.latency_p99_ms:g} ms"
        loaded += ev.loaded
        ready += ev.loaded and cand.windows >= policy.min_windows
        summaries.append(DeviceSummary(device, ev.loaded, cand.windows, problem))

    n = len(stage.devices)
    need = math.ceil(policy.min_reporting * n - 1e-9)
    numbers: dict[str, float] = {
        "devices": n,
        "devices_needed": need,
        "devices_loaded": loaded,
        "devices_ready": ready,
        "devices_silent": silent,
        "devices_failed": failed,
    }
    holds: list[str] = []
    if ready < need:
        holds.append(
            f"{ready} of {n} devices loaded the candidate and scored {policy.min_windows} windows, need {need}"
            + (f" ({silent} silent)" if silent else "")
        )
    if slow:
        holds.append(f"{len(slow)} devices over the {limits.latency_p99_ms:g} ms p99 budget (worst {max(slow):g} ms)")

    pooled = pool(e.candidate for d, e in sorted(evidence.items()) if d in inside and e.candidate is not None)
    live = pool(e.incumbent for _, e in sorted(evidence.items()) if e.incumbent is not None)
    control = live if live.windows >= limits.min_rate_windows else fallback_control
    numbers["windows"] = pooled.windows
    numbers["control_windows"] = control.windows if control else 0
    if pooled.latency_p99_ms is not None:
        numbers["latency_p99_ms_max"] = pooled.latency_p99_ms

    trust = trust or ControlTrust()
    shadow = stage.mode == "shadow"
    if control is not None:
        numbers["control_anomaly_rate"] = control.anomaly_rate
    if not trust.trusted and expectation is not None:
        yardstick = Yardstick("expectation", f"control not trusted ({trust.reason}): judged against "
                                             f"{expectation.describe()}", expectation)
        numbers["expected_anomaly_rate"] = expectation.anomaly_rate
        if expectation.traffic:
            numbers["expected_vectors"] = expectation.vectors
        against = {"reference": "reference", "stage": "traffic", "fleet": "fleet traffic"}[expectation.source]
        if pooled.windows < limits.min_rate_windows:
            holds.append(f"too few windows to compare with {expectation.describe()}: {pooled.windows}, "
                         f"need {limits.min_rate_windows}")
        else:
            # its own devices' traffic of the same period is no long-run mix: alarming far less than that is a fault
            failures_, holds_ = _compare(pooled, expectation.anomaly_rate, expectation.score_hist, against,
                                         limits, numbers, shadow=shadow, quiet_holds=expectation.source != "stage")
            failures += failures_
            holds += holds_
    else:
        yardstick = Yardstick("control", trust.reason if trust.trusted else
                              f"control not trusted ({trust.reason}), but the plan has no expectation of the "
                              "candidate: judged against the control anyway")
        if control is None or min(pooled.windows, control.windows) < limits.min_rate_windows:
            holds.append(
                f"too few windows to compare with the control: candidate {pooled.windows}, "
                f"control {control.windows if control else 0}, need {limits.min_rate_windows} each"
            )
        else:
            failures_, holds_ = _compare(pooled, control.anomaly_rate, control.score_hist, "control", limits,
                                         numbers, shadow=shadow, quiet_holds=False)
            failures += failures_
            holds += holds_

    if shadow:
        disagreements = sum(evidence[d].disagreements for d in stage.devices if d in evidence)
        rate = disagreements / pooled.windows if pooled.windows else 0.0
        numbers["disagreement_rate"] = rate
        # disagreeing with an incumbent that is known broken is what a fix does: reported, not held on
        if rate > limits.max_disagreement and yardstick.basis == "control":
            holds.append(f"shadow disagreement {rate:.3f} over {limits.max_disagreement:g}")

    label_free = estimate_holds(estimate, limits.estimate_max_drop, numbers) if estimate is not None else []
    holds += label_free

    numbers["failures"], numbers["infra_failures"] = len(failures), unfetched  # all infra: may be retried
    return Assessment(
        failures=tuple(failures),
        holds=tuple(holds),
        numbers=numbers,
        devices=tuple(summaries),
        control=live if live.windows >= limits.min_rate_windows else None,
        yardstick=yardstick,
        estimate=estimate,
        label_free_holds=tuple(label_free),
    )


def gate_f1_on(share: float, recall: float, false_alarm_rate: float) -> float | None:
    """The F1 that `recall` and `false_alarm_rate` give on traffic where a `share` of the windows are failures (F1
    moves with the share of failures; recall and the false-alarm rate do not).

    >>> round(gate_f1_on(0.1, 0.8, 0.02), 4)
    0.8081
    """
    return rates(share * recall, (1.0 - share) * false_alarm_rate, share * (1.0 - recall),
                 (1.0 - share) * (1.0 - false_alarm_rate))["f1"]


def estimate_holds(estimate: Estimate, max_drop: float, numbers: dict[str, float]) -> list[str]:
    """Holds (never failures) when the estimated recall, or F1, is more than `max_drop` below the candidate's
    gate-time recall, or the F1 its gate-time recall and false-alarm rate give at the traffic's share of failures;
    the estimate's figures go into `numbers`.

    >>> e = Estimate("ok", "on 80 vectors", recall=0.5, f1=0.55, failure_share=0.1, gate_recall=0.8,
    ...              gate_false_alarm_rate=0.02)
    >>> numbers = {}
    >>> [hold] = estimate_holds(e, 0.2, numbers)
    >>> hold[hold.index("recall"):hold.index(" (")]
    "recall 0.500 vs 0.800 at the gate, F1 0.550 vs 0.808 at the gate's recall and false-alarm rate on it"
    >>> round(numbers["gate_f1_on_traffic"], 3), estimate_holds(e, 0.4, {})
    (0.808, [])
    """
    if not estimate.ok:
        return []
    figures = {"recall": estimate.recall, "precision": estimate.precision,
               "false_alarm_rate": estimate.false_alarm_rate, "f1": estimate.f1}
    numbers.update({f"estimated_{k}": v for k, v in figures.items() if v is not None})
    numbers["estimate_samples"] = estimate.samples
    if estimate.failure_share is not None:
        numbers["estimated_failure_share"] = estimate.failure_share
    share, recall, far = estimate.failure_share, estimate.gate_recall, estimate.gate_false_alarm_rate
    gate_f1 = None if share is None or recall is None or far is None else gate_f1_on(share, recall, far)
    if estimate.gate_recall is not None:
        numbers["gate_recall"] = estimate.gate_recall
    if gate_f1 is not None:
        numbers["gate_f1_on_traffic"] = gate_f1
    low = []
    if estimate.recall is not None and recall is not None and estimate.recall < recall - max_drop:
        low.append(f"recall {estimate.recall:.3f} vs {recall:.3f} at the gate")
    if estimate.f1 is not None and gate_f1 is not None and estimate.f1 < gate_f1 - max_drop:
        low.append(f"F1 {estimate.f1:.3f} vs {gate_f1:.3f} at the gate's recall and false-alarm rate on it")
    if not low:
        return []
    return [f"label-free estimate on the stage's traffic: {', '.join(low)} (more than {max_drop:g} below; "
            f"{estimate.reason})"]


def _device_failure(ev: Evidence, cand: Scoring, limits: HealthLimits) -> str | None:
    detail = f" ({ev.detail})" if ev.detail else ""
    if ev.refused:
        return "refused the candidate" + detail
    if ev.health_failed:
        return "failed the candidate's health check" + detail
    if ev.rolled_back:
        return "rolled the candidate back itself" + detail
    if cand.nan_scores:
        return f"{cand.nan_scores} NaN scores"
    if cand.inference_errors / max(cand.windows, 1) > limits.max_error_rate:
        return f"{cand.inference_errors} inference errors in {cand.windows} windows"
    return None


def _could_not_fetch(ev: Evidence, cand: Scoring) -> bool:
    """A device failure that is only a failed download of the candidate: infrastructure, not the model."""
    return (ev.refused and fetch_failure(ev.detail) and not (ev.health_failed or ev.rolled_back)
            and not cand.nan_scores and not cand.inference_errors)


def _compare(
    cand: Scoring,
    rate: float,
    hist: tuple[int, ...],
    against: str,
    limits: HealthLimits,
    numbers: dict[str, float],
    *,
    shadow: bool,
    quiet_holds: bool,
) -> tuple[list[str], list[str]]:
    """The candidate's anomaly rate and score histogram against a yardstick's (`against` names it); `quiet_holds`:
    fewer alarms than the yardstick beyond the rollback factor hold instead of failing (a long-run or other mix)."""
    failures: list[str] = []
    holds: list[str] = []
    floor = limits.anomaly_rate_floor
    ratio = (cand.anomaly_rate + floor) / (rate + floor)
    off = max(ratio, 1.0 / ratio)
    numbers.update(anomaly_rate=cand.anomaly_rate, anomaly_rate_ratio=ratio)
    what = f"anomaly rate {cand.anomaly_rate:.4f} vs {against} {rate:.4f} (×{ratio:.2f})"
    if off > limits.rollback_anomaly_factor and ratio < 1.0 and quiet_holds:
        mix = "a long-run reference" if against == "reference" else "other devices' traffic"
        holds.append(f"{what}: beyond ×{limits.rollback_anomaly_factor:g}, but fewer alarms than {mix} "
                     "is held on, not rolled back (rolled back if it lasts until the stage's timeout)")
    elif off > limits.rollback_anomaly_factor:
        failures.append(f"{what}: beyond ×{limits.rollback_anomaly_factor:g}")
    elif off > limits.anomaly_rate_factor:
        holds.append(f"{what}: beyond ×{limits.anomaly_rate_factor:g}")

    if shadow and not cand.score_hist:
        pass  # the agent's shadow report has no histogram; paired disagreement compares the models instead
    elif not cand.score_hist or not hist:
        holds.append("no score histogram from the " + ("candidate" if not cand.score_hist else against))
    elif len(cand.score_hist) != len(hist):
        if against == "control":
            raise RolloutError(
                f"candidate and control score histograms have {len(cand.score_hist)} and {len(hist)} bins"
            )
        holds.append(f"the candidate's score histogram has {len(cand.score_hist)} bins, its {against} {len(hist)}")
    else:
        value = psi(hist, cand.score_hist).value
        numbers["score_psi"] = value
        if value > limits.max_score_psi:
            holds.append(f"score distribution PSI {value:.3f} vs {against} over {limits.max_score_psi:g}")
    return failures, holds
