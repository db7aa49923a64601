"""The incumbent's false-alarm rate before its drift, read from a real hub store: its own served decisions on
labelled healthy windows of the random slice that ended before the drift run's first report window."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.labels.service import LabelSettings, validate_and_save
from hub.store.rows import IngestRecord
from hub.store.sqlite import SqliteHubStore
from hub.training.far_floor import drift_onset, far_before_drift
from shared.messages import Annotation, Anomaly, Sample, Status

T0 = 1_700_000_000.0
ONSET = T0 + 1000.0  # window_start of the first drift report


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteHubStore]:
    s = SqliteHubStore(tmp_path / "hub.db")
    yield s
    s.close()


def traffic(store: SqliteHubStore) -> str:
    """Labelled predictions of v1 on two sites; returns the label set id.

    Before the onset, healthy random windows: site-a alarms on 6 of 300, site-b on 24 of 200. Also before it:
    anomalies not drawn into the random slice and low-confidence samples (biased: never counted), a fault
    and a v0 window. After it: healthy random windows with no alarm (the blind, drifted model: not counted)."""
    messages: list = [Status(device_id=d, ts=T0, state="online", site=s) for d, s in (("a1", "site-a"),
                                                                                          ("b1", "site-b"))]
    n = 0

    def window(device: str, end: float, *, alarm: bool, kind: str = "random", label: str = "no_fault",
               version: str = "v1") -> None:
        nonlocal n
        n += 1
        common = {"device_id": device, "ts": end, "trace_id": f"t{n:05d}", "window_start": end - 3, "window_end": end,
                  "score": 0.9 if alarm else 0.1, "threshold": 0.5, "decision": alarm, "features": [0.1],
                  "model_version": version}
        if kind == "anomaly":
            messages.append(Anomaly(**common))
        elif alarm:
            messages.append(Anomaly(sampled=True, **common))
        else:
            messages.append(Sample(reason=kind, **common))
        messages.append(Annotation(device_id=device, ts=end + 1, trace_id=f"t{n:05d}", label=label,
                                   technician_id="ann", signal="confirmed"))

    for i in range(300):
        window("a1", T0 + i, alarm=i % 50 == 0)
    for i in range(200):
        window("b1", T0 + i, alarm=i % 25 < 3)
    for i in range(50):
        window("b1", T0 + 300 + i, alarm=True, kind="anomaly")  # not drawn: biased, not counted
        window("b1", T0 + 400 + i, alarm=False, kind="low_confidence")
    window("a1", T0 + 500, alarm=True, label="fault")
    window("a1", T0 + 501, alarm=True, version="v0")
    for i in range(100):
        window("b1", ONSET + 10 + i, alarm=False)
    store.ingest_batch([IngestRecord(m, T0) for m in messages])
    return validate_and_save(store, LabelSettings(), now=ONSET + 500).row.id


def report(store: SqliteHubStore, verdict: str, end: float, scope: str = "fleet@v1") -> None:
    store.save_drift_report({"window_start": end - 100.0, "window_end": end}, scope, verdict, ts=end)


def test_the_rate_before_the_drift_run_overall_and_per_cohort(store: SqliteHubStore) -> None:
    label_set = traffic(store)
    report(store, "no_drift", ONSET - 50)
    report(store, "drift", ONSET + 100)  # the run's first report: its window starts at ONSET
    report(store, "insufficient_data", ONSET + 150)
    report(store, "drift", ONSET + 200)
    report(store, "no_drift", ONSET + 150, scope="fleet@v2")
    assert drift_onset(store, "v1") == ONSET
    floor = far_before_drift(store, "v1", label_set, min_negatives=400, min_cohort_negatives=50)
    assert floor is not None
    assert (floor.version, floor.onset) == ("v1", ONSET)
    assert floor.negatives == {"": 500, "site-a": 300, "site-b": 200}
    assert floor.overall == pytest.approx(30 / 500)
    assert floor.cohorts == pytest.approx({"site-a": 6 / 300, "site-b": 24 / 200})

    fewer = far_before_drift(store, "v1", label_set, min_negatives=501, min_cohort_negatives=250)
    assert fewer is not None and fewer.overall is None and fewer.cohorts == pytest.approx({"site-a": 0.02})


def test_no_floor_unless_the_latest_conclusive_verdict_is_drift(store: SqliteHubStore) -> None:
    label_set = traffic(store)
    assert far_before_drift(store, "v1", label_set, min_negatives=1, min_cohort_negatives=1) is None  # no report
    report(store, "drift", ONSET + 100)
    report(store, "no_drift", ONSET + 200)
    report(store, "insufficient_data", ONSET + 300)
    assert drift_onset(store, "v1") is None
    assert far_before_drift(store, "v1", label_set, min_negatives=1, min_cohort_negatives=1) is None
    assert drift_onset(store, "v2") is None
