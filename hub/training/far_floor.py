"""The incumbent's false-alarm rate before it drifted: the floor the gate measures a drift fix's false alarms from.

Drift often blinds a model: a sensor that reads low moves every window away from the alarm region, so the
incumbent's recall falls *and so do its false alarms*. Judged against that blinded incumbent, a fix that only
brings false alarms back to where the incumbent had them before the drift reads as a false-alarm regression,
overall or on the cohort the drift hit hardest, and is rejected; the fleet keeps the blind model.

So when the hub's latest conclusive fleet-wide verdict on the incumbent is drift, the gate measures a
false-alarm rise from the larger of the incumbent's rate on the evaluation slice and its rate on this fleet
before the drift began (`hub.gate.verdict.FarFloor`). That rate is read from the incumbent's own decisions, as it
served them (every stored prediction keeps its decision), on labelled healthy windows of the random baseline
slice (reason ``random``: drawn regardless of the decision, so unbiased) that ended before the window of the
first report of the current drift run. A scope with fewer such windows than the gate's minimum of negatives
gets no floor. The floor only ever loosens the false-alarm checks back to a rate the fleet already ran
with; the recall checks and every other check are unchanged.

Pure: this module computes the floor from report and prediction rows; reading them from the store is
`hub.training.service.loading` (`drift_onset`, `far_before_drift`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from hub.gate.verdict import FarFloor
from hub.store.rows import DriftReportRow, LabelItemRow, PredictionRow
from hub.training.dataset import UNKNOWN_COHORT


def onset_from_reports(reports: Iterable[DriftReportRow]) -> float | None:
    """Start of the window of the first report of the current drift run, from one scope's reports (newest
    first); None when the latest conclusive verdict (drift or no_drift) is not drift, or there is none."""
    onset = None
    for report in reports:  # newest first
        if report.verdict == "insufficient_data":
            continue
        if report.verdict != "drift":
            break
        start = report.report.get("window_start")
        onset = float(start) if isinstance(start, int | float) else report.ts
    return onset


def healthy_cohorts(items: Iterable[LabelItemRow]) -> dict[str, str]:
    """The trace ids of a label set's healthy (label 0) items, with their cohort as the evaluation slice names it."""
    return {i.trace_id: i.cohort or UNKNOWN_COHORT for i in items if i.label == 0}


def floor_from_decisions(incumbent: str, onset: float, healthy: Mapping[str, str],
                         predictions: Iterable[PredictionRow], *, min_negatives: int,
                         min_cohort_negatives: int) -> FarFloor:
    """The incumbent's false-alarm rate, overall and per cohort, from its own decisions on the `healthy`
    windows of the random slice that ended before `onset`; a scope with too few such windows gets no rate."""
    windows: Counter[str] = Counter()
    alarms: Counter[str] = Counter()
    for p in predictions:
        if p.reason == "random" and p.model_version == incumbent and p.window_end < onset and p.trace_id in healthy:
            cohort = healthy[p.trace_id]
            windows[cohort] += 1
            alarms[cohort] += int(p.decision)
    n, fp = sum(windows.values()), sum(alarms.values())
    cohorts = {c: alarms[c] / k for c, k in sorted(windows.items()) if k >= min_cohort_negatives}
    return FarFloor(version=incumbent, onset=onset, overall=fp / n if n >= min_negatives else None,
                    cohorts=cohorts, negatives={"": n, **dict(sorted(windows.items()))})
