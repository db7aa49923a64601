"""Recall and false alarms over time: ground truth of every logged window, the served vs the frozen model."""

from __future__ import annotations

import doctest
import math
from pathlib import Path

import numpy as np

import fleetloop.story.metrics
from fleetloop.fleet.logs import AgentLogs, DeviceLog
from fleetloop.story.metrics import Rates, ScoredWindows, accuracy, score_windows
from models.onnx_export import onnx_scores, onnx_session
from models.version import read_version
from shared.features import extract, sliding_windows
from sim import MachineConfig, SensorOffset, SimulatedMachine
from sim.technicians import GroundTruth, SimDevice

T0, RATE = 1_700_000_000.0, 100.0


def test_doctests() -> None:
    assert doctest.testmod(fleetloop.story.metrics).failed == 0


def windows(ts, truth, served, frozen, versions, devices=None) -> ScoredWindows:
    n = len(ts)
    return ScoredWindows(np.array(devices or ["d0"] * n), np.array(ts, float), np.array(versions),
                         np.array(truth, bool), np.array(served, bool), np.array(frozen, bool))


def test_periods_split_on_the_injection_and_the_recovery() -> None:
    w = windows(
        ts=[T0 + t for t in (1, 2, 11, 12, 13, 21, 22, 23, 24)],
        truth=[1, 0, 1, 1, 0, 1, 1, 0, 0],
        served=[1, 0, 0, 0, 1, 1, 1, 0, 1],
        frozen=[1, 0, 0, 0, 1, 0, 1, 0, 0],
        versions=["v1", "v1", "v1", "v2", "v1", "v2", "v2", "nan-1", "v2"],
    )
    acc = accuracy(w, origin=T0, bucket_s=10.0, injected_at=T0 + 10, recovered_at=T0 + 20, promoted="v2",
                   min_positives=1)
    p = acc.periods
    assert p["healthy"]["served"] == Rates(1.0, 0.0, 1, 1)
    assert p["before_fix"]["served"] == Rates(0.0, 1.0, 1, 1)  # the canary's early v2 window is not "before"
    assert p["after_fix"]["served"] == Rates(1.0, 1.0, 2, 1)  # nan-1's window is neither
    assert p["after_fix"]["frozen"] == Rates(0.5, 0.0, 2, 1)
    assert acc.t.tolist() == [5.0, 15.0, 25.0]
    assert [r.recall for r in acc.served] == [1.0, 0.0, 1.0]
    few = accuracy(w, origin=T0, bucket_s=10.0, injected_at=None, recovered_at=None, promoted=None, min_positives=2)
    assert math.isnan(few.served[0].recall) and few.served[2].recall == 1.0 and few.periods == {}
    assert set(acc.to_json()["periods"]) == {"healthy", "before_fix", "after_fix"}


def test_every_logged_window_is_judged_against_ground_truth_and_the_frozen_model(initial_model_dir: Path) -> None:
    manifest, onnx = read_version(initial_model_dir)
    drift = SensorOffset(sensor="vibration", offset=-2.0, start_t=600)
    device = SimDevice("d0", seed=5, config=MachineConfig(), drifts=(drift,), start_ts=T0, rate=RATE)
    machine = SimulatedMachine("d0", 5, MachineConfig())
    machine.inject(drift)
    trace = machine.run(3000)
    X = extract(sliding_windows(trace.values, manifest.window))
    ends = np.arange(manifest.window.size - 1, 3000, manifest.window.step)[: len(X)]
    scores = onnx_scores(onnx_session(onnx), X)
    log = DeviceLog("d0", ts=device.start_ts + ends / RATE + 0.01, window_end=device.start_ts + ends / RATE,
                    model_version=np.array(["v1"] * len(X)), features=X.astype(np.float32), score=scores,
                    decision=np.zeros(len(X), bool))
    w = score_windows([log], {"d0": device}, horizon=100, frozen_onnx=onnx, frozen_threshold=manifest.threshold)
    assert len(w) == len(X)
    assert np.array_equal(w.truth, trace.rul[ends] <= 100)
    assert np.array_equal(w.frozen, scores >= manifest.threshold) and not w.served.any()
    assert 0 < w.truth.sum() < len(w) and w.frozen.sum() > 0
    assert np.array_equal(w.truth, GroundTruth().rul_of(device, ends) <= 100)


def test_agent_logs_read_an_agent_database(tmp_path: Path) -> None:
    from agent.db import AgentDB, PredictionRow

    db = AgentDB(tmp_path / "d0" / "agent.db")
    rows = [PredictionRow(f"t{i}", "d0", T0 + i, None, T0 + i - 1, T0 + i - 0.5, "v1" if i < 3 else "v2",
                          np.full(4, i, np.float32).tobytes(), None if i == 4 else 0.1 * i, i == 2)
            for i in range(5)]
    db.write_batch(rows, [])
    logs = AgentLogs(tmp_path)
    assert [p.trace_id for p in logs.logged("d0", after_row=1, until_ts=T0 + 3)] == ["t1", "t2", "t3"]
    assert logs.logged("nobody", after_row=0, until_ts=T0 + 10) == []
    assert logs.first_scored_after("d0", T0 + 2.0) == T0 + 3 and logs.first_scored_after("d0", T0 + 99) is None
    assert logs.versions_since("d0", T0 + 2.5) == {"v2"}
    log = logs.read("d0")
    assert len(log) == 5 and log.features.shape == (5, 4) and log.features[3, 0] == 3
    assert log.decision.tolist() == [False, False, True, False, False] and math.isnan(log.score[4])
    assert log.model_version.tolist() == ["v1", "v1", "v1", "v2", "v2"]
    db.close()
