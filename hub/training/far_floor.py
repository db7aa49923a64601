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
"""

from __future__ import annotations

from collections import Counter

from hub.gate.verdict import FarFloor
from hub.store.ports import HubStore
from hub.training.dataset import UNKNOWN_COHORT

_REPORTS = 1000


def drift_onset(store: HubStore, version: str) -> float | None:
    """Start of the window of the first report of `version`'s current fleet-wide drift run; None when its
    latest conclusive verdict (drift or no_drift) is not drift, or there is none."""
    onset = None
    for report in store.drift_reports(limit=_REPORTS, scope=f"fleet@{version}"):  # newest first
        if report.verdict == "insufficient_data":
            continue
        if report.verdict != "drift":
            break
        start = report.report.get("window_start")
        onset = float(start) if isinstance(start, int | float) else report.ts
    return onset


def far_before_drift(store: HubStore, incumbent: str, label_set_id: str, *, min_negatives: int,
                     min_cohort_negatives: int) -> FarFloor | None:
    """The incumbent's false-alarm rate on this fleet before its current drift, overall and per cohort (the
    label set's cohorts, as the evaluation slice names them); None when it has not drifted."""
    onset = drift_onset(store, incumbent)
    if onset is None:
        return None
    healthy = {i.trace_id: i.cohort or UNKNOWN_COHORT for i in store.label_set_items(label_set_id) if i.label == 0}
    windows: Counter[str] = Counter()
    alarms: Counter[str] = Counter()
    for p in store.predictions_by_trace(list(healthy)):
        if p.reason == "random" and p.model_version == incumbent and p.window_end < onset:
            cohort = healthy[p.trace_id]
            windows[cohort] += 1
            alarms[cohort] += int(p.decision)
    n, fp = sum(windows.values()), sum(alarms.values())
    cohorts = {c: alarms[c] / k for c, k in sorted(windows.items()) if k >= min_cohort_negatives}
    return FarFloor(version=incumbent, onset=onset, overall=fp / n if n >= min_negatives else None,
                    cohorts=cohorts, negatives={"": n, **dict(sorted(windows.items()))})
