"""What a retrain reads from a real hub store. The training set and the evaluation slice: the slice is frozen
and disjoint from training, sources stay apart. The incumbent's false-alarm rate before its drift: its own served
decisions on labelled healthy windows of the random slice that ended before the drift run's first report window."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hub.labels.service import LabelSettings, validate_and_save
from hub.store.rows import IngestRecord
from hub.store.sqlite import SqliteHubStore
from hub.training.dataset import Datasets, split_key
from hub.training.service.loading import build_datasets, drift_onset, far_before_drift
from models.onnx_export import onnx_scores, onnx_session
from models.version import read_version
from shared.messages import Annotation, Anomaly, Sample, Status
from sim.dataset import simulate_windows
from tests.hub.training.conftest import DRIFT, World, build_world, fleet_messages, training_settings

# --- the training set and the evaluation slice ----------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, initial_model_dir: Path) -> Iterator[World]:
    world = build_world(tmp_path_factory.mktemp("hub"), initial_model_dir, n_machines=4, steps=1500)
    yield world
    world.store.close()


def _build(world: World, label_set_id: str, **overrides: object) -> Datasets:
    parent = world.registry.manifest("v1")
    assert parent is not None
    return build_datasets(world.store, label_set_id=label_set_id, parent=parent,
                          settings=training_settings(**overrides), max_cohort_share=0.5, now=world.clock())


def test_the_evaluation_slice_is_frozen_and_disjoint_from_training(small: World) -> None:
    first = _build(small, small.label_set_id)
    evaluation, field_rows = set(first.evaluation.trace_id.tolist()), set(first.training.field.trace_id.tolist())
    assert not evaluation & field_rows
    assert len(evaluation | field_rows) == len(small.fleet)  # every label on one side
    assert 0.15 < len(evaluation) / len(small.fleet) < 0.45  # ~30%, in blocks
    assert {t for t, _ in small.store.eval_slice()} == evaluation

    # Membership never moves: not on a rebuild, not when the fraction changes.
    again = _build(small, small.label_set_id, eval_fraction=0.6)
    assert set(again.evaluation.trace_id.tolist()) == evaluation
    assert set(again.training.field.trace_id.tolist()) == field_rows

    # New traffic is assigned on first sight; old traces keep their side.
    parent_manifest, onnx = read_version(small.registry.path("v1"))
    later = simulate_windows(5, 1500, 99, parent_manifest.window, 100, drifts=[DRIFT])
    later = later.subset(later.machine_id == "sim-004")  # a machine the hub has not seen
    scores = onnx_scores(onnx_session(onnx), later.X)
    small.store.ingest_batch([IngestRecord(m, small.clock()) for m in
                              fleet_messages(later, scores, parent_manifest.threshold, t0=small.clock() - 20_000)])
    label_set = validate_and_save(small.store, LabelSettings(), now=small.clock()).row.id
    third = _build(small, label_set)
    new_eval = set(third.evaluation.trace_id.tolist())
    assert new_eval & evaluation == evaluation
    assert not new_eval & set(third.training.field.trace_id.tolist())
    assert any(t.startswith("sim-004") for t in new_eval)


def test_a_device_block_falls_on_one_side(small: World) -> None:
    built = _build(small, small.label_set_id)
    predictions = {p.trace_id: p for p in small.store.predictions_by_trace(built.evaluation.trace_id.tolist())}
    eval_blocks = {split_key(p.device_id, p.ts, p.trace_id, 600.0) for p in predictions.values()}
    assert not eval_blocks & set(built.training.field.group.tolist())


def test_sources_stay_apart_with_their_counts(small: World) -> None:
    built = _build(small, small.label_set_id)
    ts = built.training
    assert ts.data_kind == "mixed"
    assert set(ts.sim.trace_id.tolist()) == {""} and "" not in set(ts.field.trace_id.tolist())
    assert ts.source.tolist() == ["sim"] * len(ts.sim) + ["field"] * len(ts.field)
    assert ts.X.shape == (len(ts), 36) and ts.X.dtype == np.float32
    sim_desc, field_desc = ts.descriptions
    assert sim_desc.startswith("sim:n_machines=30,steps=2500,horizon=100,seed=7") and f"rows={len(ts.sim)}" in sim_desc
    assert f"rows={len(ts.field)}" in field_desc and f"eval_rows={len(built.evaluation)}" in field_desc
    # Field weights: the label's weight × feedback_weight, then no cohort above half of the field weight.
    shares = {c: ts.field.weight[ts.field.cohort == c].sum() / ts.field.weight.sum() for c in set(ts.field.cohort)}
    assert max(shares.values()) <= 0.5 + 1e-9
    assert ts.field.weight.max() == pytest.approx(2.0)  # confirmed labels weigh 1, uncapped cohort keeps it

    no_sim = _build(small, small.label_set_id, sim_weight=0.0)
    assert no_sim.training.data_kind == "real" and len(no_sim.training.sim) == 0
    assert no_sim.weighting is not None and no_sim.weighting.base_scale == 1.0 and no_sim.weighting.field_share == 1.0


def test_the_field_holds_its_share_of_the_weight_and_recent_labels_count_more(small: World) -> None:
    """30 simulated machines against 4 machines' labels: with a share of 0.5 the base set is scaled down to half the
    weight, not the field up; with fixed weights (the default) it outweighs the field; a half-life decays older
    labels."""
    built = _build(small, small.label_set_id, field_min_share=0.5)
    ts, w = built.training, built.weighting
    assert w is not None and (w.method, w.field_min_share, w.half_life_s) == ("field_share", 0.5, None)
    assert 0 < w.base_scale < 1 and ts.sim.weight == pytest.approx(np.full(len(ts.sim), w.base_scale))
    assert w.field_share == pytest.approx(0.5) and w.base_total == pytest.approx(ts.sim.weight.sum(), rel=1e-6)
    assert w.field_total == pytest.approx(ts.field.weight.sum(), rel=1e-6)

    fixed = _build(small, small.label_set_id)  # the default: fixed weights
    wf = fixed.weighting
    assert wf is not None and (wf.method, wf.base_scale) == ("fixed", 1.0)
    assert wf.field_share is not None and wf.field_share < 0.5  # what the share setting corrects
    assert fixed.training.field.weight == pytest.approx(ts.field.weight)  # the field's own weights do not move

    decayed = _build(small, small.label_set_id, field_half_life_s=3600.0, balance_cohorts=False)
    flat = _build(small, small.label_set_id, balance_cohorts=False)
    ratio = decayed.training.field.weight / flat.training.field.weight
    ends = {p.trace_id: p.window_end for p in small.store.predictions_by_trace(flat.training.field.trace_id.tolist())}
    age = max(ends.values()) - np.array([ends[t] for t in flat.training.field.trace_id.tolist()])
    assert ratio == pytest.approx(0.5 ** (age / 3600.0))  # halves per hour of data time before the newest label
    assert ratio.max() == pytest.approx(1.0) and ratio.min() < 0.25
    assert decayed.weighting is not None and decayed.weighting.half_life_s == 3600.0



# --- the false-alarm floor --------------------------------------------------------------------------------

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
