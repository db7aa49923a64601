"""The false-alarm floor, pure: the drift run's onset from a scope's reports, and the incumbent's rate from its
own decisions on healthy random windows before it (the store reads: tests/hub/training/service/test_loading.py)."""

from __future__ import annotations

import pytest

from hub.store.rows import DriftReportRow, LabelItemRow, PredictionRow
from hub.training.far_floor import floor_from_decisions, healthy_cohorts, onset_from_reports


def _report(verdict: str, end: float) -> DriftReportRow:
    return DriftReportRow(id=int(end), ts=end, scope="fleet@v1", verdict=verdict,
                          report={"window_start": end - 100.0, "window_end": end})


def _prediction(trace_id: str, end: float, *, alarm: bool, reason: str | None = "random",
                version: str = "v1") -> PredictionRow:
    return PredictionRow(trace_id=trace_id, msg_id=f"m-{trace_id}", kind="sample", device_id="d1", ts=end,
                         received_at=end, model_version=version, unit=None, window_start=end - 3, window_end=end,
                         score=0.9 if alarm else 0.1, threshold=0.5, decision=alarm, reason=reason, features=())


def test_the_onset_is_the_first_report_of_the_latest_drift_run() -> None:
    newest_first = [_report("drift", 400.0), _report("insufficient_data", 350.0), _report("drift", 300.0),
                    _report("no_drift", 200.0), _report("drift", 100.0)]
    assert onset_from_reports(newest_first) == 200.0
    assert onset_from_reports([_report("no_drift", 400.0), _report("drift", 300.0)]) is None
    assert onset_from_reports([_report("insufficient_data", 400.0)]) is None
    assert onset_from_reports([]) is None


def test_the_rate_counts_only_the_incumbents_healthy_random_windows_before_the_onset() -> None:
    items = [LabelItemRow(trace_id=f"t{i}", device_id="d1", label=int(i == 9), weight=1.0, confidence=1.0,
                          n_annotations=1, cohort="site-a" if i < 5 else None, model_version="v1") for i in range(10)]
    healthy = healthy_cohorts(items)
    assert set(healthy) == {f"t{i}" for i in range(9)} and healthy["t5"] == "unknown"
    predictions = [
        _prediction("t0", 10.0, alarm=True), _prediction("t1", 11.0, alarm=False), _prediction("t2", 12.0, alarm=False),
        _prediction("t5", 15.0, alarm=True), _prediction("t6", 16.0, alarm=False),
        _prediction("t3", 13.0, alarm=True, reason="low_confidence"),  # biased: not counted
        _prediction("t4", 14.0, alarm=True, version="v0"),  # another model's decision
        _prediction("t7", 500.0, alarm=False),  # after the onset
        _prediction("t9", 19.0, alarm=True),  # a fault: not healthy
    ]
    floor = floor_from_decisions("v1", 100.0, healthy, predictions, min_negatives=5, min_cohort_negatives=3)
    assert (floor.version, floor.onset) == ("v1", 100.0)
    assert floor.negatives == {"": 5, "site-a": 3, "unknown": 2}
    assert floor.overall == pytest.approx(2 / 5)
    assert floor.cohorts == pytest.approx({"site-a": 1 / 3})
    fewer = floor_from_decisions("v1", 100.0, healthy, predictions, min_negatives=6, min_cohort_negatives=1)
    assert fewer.overall is None
