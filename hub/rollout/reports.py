"""A stage's evidence and yardsticks from what the hub received: pure functions over the store's frozen rows.

Evidence of a stage is what the hub *received* since the stage began (hub clock, `received_at`), so device
clocks do not matter within the caller's clock skew. Model events about the candidate count from the moment the
device was assigned its current version and mode; stats and shadow reports from the moment the stage began.
Whether the control can be trusted comes from the drift job: the latest conclusive verdict on
``fleet@<incumbent>`` since a maximum age before the rollout started (a drifted incumbent makes the candidate's
own manifest reference, stored with the plan as its `Expectation`, the yardstick; see `hub.rollout.health`), and so
does the labels' verdict that the incumbent's realized performance degraded since then (`performance_trust`).
The rollout service reads the rows and passes them in.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from hub.rollout.errors import RolloutError
from hub.rollout.evidence import ControlTrust, Evidence, Expectation, Scoring, pool
from hub.rollout.plan import RolloutPlan
from hub.rollout.state import RolloutState
from hub.store.rows import DriftReportRow, EventRow, ModelEventRow, StageStatsRow
from shared.manifest import ModelManifest

log = logging.getLogger(__name__)

LOADED_EVENTS = frozenset({"loaded", "swapped", "health_ok"})
PROBLEM_EVENTS = ("refused", "health_failed", "rolled_back")


def assigned_since(plan: RolloutPlan, state: RolloutState) -> dict[str, float]:
    """When each device holding the candidate got its current (version, mode): the stage that changed it."""
    target: dict[str, tuple[str, str]] = {}
    since: dict[str, float] = {}
    for t in state.history:
        if t.status != "running" or t.action not in ("start", "advance", "promote"):
            continue
        stage = plan.stage(t.to_stage)
        for device in plan.fleet:
            now = (plan.candidate, stage.mode) if device in stage.devices else (plan.incumbent, "active")
            if target.get(device) != now:
                target[device], since[device] = now, t.at
    return {d: at for d, at in since.items() if target[d][0] == plan.candidate}


def stage_evidence(
    plan: RolloutPlan, state: RolloutState, events: Iterable[ModelEventRow], stats: Iterable[StageStatsRow]
) -> dict[str, Evidence]:
    """Every fleet device's evidence for the current stage, from the model events received since the rollout
    started and the stats received since the stage was entered (rows of other devices or versions are ignored)."""
    fleet = set(plan.fleet)
    since = assigned_since(plan, state)
    shadow = plan.stage(state.stage).mode == "shadow"
    events_by: dict[str, list[ModelEventRow]] = defaultdict(list)
    for e in events:
        if e.device_id in fleet and e.version == plan.candidate and e.received_at >= state.started_at:
            events_by[e.device_id].append(e)
    stats_by: dict[str, list[StageStatsRow]] = defaultdict(list)
    for s in stats:
        stats_by[s.device_id].append(s)
    return {
        device: device_evidence(
            events_by[device], stats_by[device], candidate=plan.candidate, incumbent=plan.incumbent,
            assigned_at=since.get(device, state.entered_at), entered_at=state.entered_at, shadow=shadow,
        )
        for device in sorted(set(events_by) | set(stats_by))
    }


def device_evidence(
    events: Sequence[ModelEventRow], stats: Sequence[StageStatsRow], *, candidate: str, incumbent: str,
    assigned_at: float, entered_at: float, shadow: bool,
) -> Evidence:
    """One device's evidence from its model events about the candidate and its stats (oldest first)."""
    current = [e for e in events if e.received_at >= assigned_at]
    kinds = {e.event for e in current}
    problems = [e for e in current if e.event in PROBLEM_EVENTS]
    cand_stats = [s for s in stats if s.model_version == candidate]
    inc_stats = [s for s in stats if s.model_version == incumbent]
    if shadow:
        reports = [e for e in events if e.event == "shadow_report" and e.received_at >= entered_at]
        cand: Scoring | None = shadow_scoring(reports) if reports else None
        disagreements = sum(int(e.metrics.get("disagreements", 0)) for e in reports)
    else:
        cand, disagreements = (scoring(cand_stats) if cand_stats else None), 0
    return Evidence(
        loaded=bool(kinds & LOADED_EVENTS) or bool(cand_stats),
        refused="refused" in kinds,
        health_failed="health_failed" in kinds,
        rolled_back="rolled_back" in kinds,
        candidate=cand,
        incumbent=scoring(inc_stats) if inc_stats else None,
        disagreements=disagreements,
        detail=problems[-1].detail if problems else None,
    )


def scoring(rows: Iterable[StageStatsRow]) -> Scoring:
    """Stats rows pooled: counts and histograms summed, latency the worst p99 (rows whose bins differ skip it)."""
    parts = []
    for r in rows:
        lat = r.latency_p99_ms if r.latency_p99_ms is not None and math.isfinite(r.latency_p99_ms) else None
        parts.append(Scoring(r.windows, r.anomalies, r.inference_errors, r.nan_scores, lat, tuple(r.score_hist)))
    lengths = {len(p.score_hist) for p in parts if p.score_hist}
    if len(lengths) > 1:  # a version with other score bins: compare counts, not histograms
        parts = [Scoring(p.windows, p.anomalies, p.inference_errors, p.nan_scores, p.latency_p99_ms) for p in parts]
    return pool(parts)


def shadow_scoring(reports: Iterable[ModelEventRow]) -> Scoring:
    """The candidate's scoring from shadow reports. They carry no p99: the worst per-report mean stands in
    (a per-report max is one scheduling hiccup's), and no histogram (the machine compares disagreement)."""
    windows = anomalies = errors = nans = 0
    latency: float | None = None
    for e in reports:
        m = e.metrics
        windows += int(m.get("windows", 0))
        anomalies += round(m.get("shadow_anomaly_rate", 0.0) * m.get("compared", 0.0))
        errors += int(m.get("inference_errors", 0))
        nans += int(m.get("nan_scores", 0))
        lat = m.get("latency_p99_ms", m.get("latency_mean_ms"))
        if lat is not None:
            latency = lat if latency is None else max(latency, lat)
    return Scoring(windows, anomalies, errors, nans, latency)


def baseline(rows: Iterable[StageStatsRow], incumbent: str) -> Scoring | None:
    """The incumbent's own scoring over the fleet before the rollout (the control of last resort); None if
    it scored nothing."""
    base = scoring(r for r in rows if r.model_version == incumbent)
    return base if base.windows else None


def control_trust(reports: Iterable[DriftReportRow], scope: str, *, since: float) -> ControlTrust:
    """Whether the control is a fair yardstick: the first conclusive verdict among `reports` (newest first, on
    `scope` such as ``fleet@<incumbent>``) made at or after `since`; trusted when there is none."""
    for report in reports:
        if report.ts < since:
            continue
        if report.verdict in ("drift", "no_drift"):
            reason = report.report.get("reason")
            return ControlTrust.from_drift(scope, report.verdict, at=report.ts,
                                           detail=reason if isinstance(reason, str) else None)
    return ControlTrust.from_drift(scope, None)


def performance_trust(events: Iterable[EventRow], incumbent: str, *, since: float) -> ControlTrust | None:
    """Not trusted when the labels showed the incumbent's realized performance degraded: the first of `events`
    (``performance_degraded``, `hub.training.performance`) about `incumbent` made at or after `since`; None when there
    is none. An incumbent that misses a new failure mode alarms too little on it, so a candidate that catches it
    would read as an alarm flood against the control while nothing drifted.

    >>> from hub.store.rows import EventRow
    >>> e = EventRow(1, 1000.0, "performance_degraded", {"model_version": "v1", "scope": "fleet", "reason": "recall"})
    >>> performance_trust([e], "v1", since=0.0).trusted, performance_trust([e], "v2", since=0.0)
    (False, None)
    """
    for e in events:
        if e.ts >= since and e.payload.get("model_version") == incumbent:
            return ControlTrust(False, f"realized performance of {incumbent} degraded at {e.ts:.0f} "
                                       f"({e.payload.get('scope')}): {e.payload.get('reason')}")
    return None


def expectation(manifest: ModelManifest | None) -> Expectation | None:
    """The candidate's own expectation of its scoring, from its manifest's reference and threshold."""
    if manifest is None:
        return None
    ref = manifest.reference
    try:
        return Expectation.from_reference(ref.score_bin_edges, ref.score_histogram, manifest.threshold)
    except RolloutError as exc:  # an empty reference histogram: the control stays the only yardstick
        log.warning("no expectation of %s from its manifest: %s", manifest.version, exc)
        return None
