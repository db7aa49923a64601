"""Retrain and gate on a drifted fleet: real store, registry, ONNX and onnxruntime, seeded and exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.labels.service import LabelSettings
from hub.registry.service import Registry
from hub.registry.signing import SigningKey
from hub.store.rows import IngestRecord, TrainingJobRow
from hub.store.sqlite import SqliteHubStore
from hub.training.service.retrain import Retrainer
from hub.training.settings import TrainingSettings
from hub.training.triggers import TRIGGER_EVENT
from shared.messages import Sample
from tests.hub.training.conftest import T0, World

REASON = "vibration sensors recalibrated on every site"


@pytest.fixture(scope="module")
def drift_job(drifted: World) -> TrainingJobRow:
    """The retrain an operator asks for after the drift (manual, synchronous, as `fleetloop hub retrain`)."""
    return drifted.service().retrain_now(actor="operator:ana", reason=REASON, now=drifted.clock(),
                                         label_set_id=drifted.label_set_id)


def test_a_retrain_on_drifted_feedback_passes_the_gate_and_beats_the_incumbent(drifted: World,
                                                                             drift_job: TrainingJobRow) -> None:
    assert drift_job.status == "succeeded", drift_job.error
    assert (drift_job.gate_verdict, drift_job.stage, drift_job.progress) == ("pass", "done", 1.0)
    row = drifted.registry.get(drift_job.result_version or "")
    assert row.status == "candidate" and row.parent_version == "v1"
    gate = row.gate or {}
    assert gate["passed"] is True and gate["verdict"] == "pass" and gate["reasons"] == []
    cand, inc = gate["candidate"], gate["incumbent"]
    # Same frozen slice for both, and the candidate wins back the faults the drift hid.
    assert (cand["n_pos"], cand["n_neg"]) == (inc["n_pos"], inc["n_neg"]) and cand["n_pos"] >= 50
    assert cand["recall"] > inc["recall"] + 0.1, (cand, inc)
    assert cand["f1"] > inc["f1"] + 0.05, (cand, inc)
    assert cand["false_alarm_rate"] <= inc["false_alarm_rate"] + 0.01
    assert {c["name"] for c in gate["checks"]} >= {"recall", "false_alarm_rate", "cohort_recall:site-a",
                                                  "cohort_recall:site-b", "parity_label_flips", "latency_p99_ms"}
    assert all(c["passed"] for c in gate["checks"])
    assert gate["incumbent_version"] == "v1" and gate["latency_p99_ms"] > 0  # the budget: bench/budgets.py
    assert set(gate["candidate_cohorts"]) == set(gate["incumbent_cohorts"]) == {"site-a", "site-b"}
    assert drift_job.details["timings_s"]["total"] > 0  # recorded; how long it may take: bench/budgets.py


def test_the_manifest_records_where_the_candidate_came_from(drifted: World, drift_job: TrainingJobRow) -> None:
    version = drift_job.result_version or ""
    m = drifted.registry.manifest(version)
    assert m is not None and m.version == version and m.parent_version == "v1"
    assert m.training.data_kind == "mixed" and m.training.seed == 7
    assert m.training.label_set_version == drifted.label_set_id
    sim_source, field_source = m.training.sources
    assert sim_source.startswith("sim:n_machines=30,steps=2500,horizon=100,seed=7 rows=")
    assert field_source.startswith(f"field:label_set={drifted.label_set_id} rows=")
    assert m.provenance.created_by == "hub:retrain" and m.provenance.reason == REASON
    assert m.provenance.trigger_id == drift_job.trigger_id and drift_job.trigger_id is not None
    params = m.training.params
    assert params["n_eval"] + params["n_field"] == len(drifted.fleet)  # every label on exactly one side
    assert params["label_transform"] == "none" and params["reference_from"] == "field_random"
    gate = drifted.registry.get(version).gate or {}
    assert m.metrics["recall"] == pytest.approx(gate["candidate"]["recall"])  # metrics are on the eval slice
    assert m.metrics["parity_label_flips"] == 0.0
    assert set(m.cohort_metrics) == {"site-a", "site-b"}
    assert len(m.reference.bin_edges) == len(m.feature_names) == 36
    assert {"numpy", "scikit-learn", "skl2onnx", "onnxruntime"} <= set(m.library_versions)
    audit = drifted.store.model_audit(version=version)
    assert [(a.action, a.from_status, a.to_status, a.actor) for a in audit] == [
        ("registered", None, "candidate", "hub:retrain"), ("gate", "candidate", "candidate", "hub:retrain")]
    assert audit[1].details["job_id"] == drift_job.id


def test_the_manifest_records_the_weights_and_a_calibration_fitted_on_the_slice(drifted: World,
                                                                              drift_job: TrainingJobRow) -> None:
    m = drifted.registry.manifest(drift_job.result_version or "")
    assert m is not None
    w = m.training.weighting  # fixed weights (the default): 30 simulated machines outweigh 12 machines' labels
    assert w is not None and (w.method, w.base_scale, w.base_row_weight, w.field_row_weight) == ("fixed", 1, 1, 2)
    assert w.base_total == pytest.approx(m.training.params["n_sim"]) and w.field_share is not None
    assert 0 < w.field_share < 0.5
    assert w.field_total == pytest.approx(w.field_share / (1 - w.field_share) * w.base_total, rel=1e-4)
    cal = m.calibration  # on the frozen slice, the rows the metrics are on, not the ones it was fitted on
    assert cal is not None and cal.fitted_on == "eval" and cal.n == m.training.params["n_eval"]
    assert cal.n_positive == round(m.metrics["n_positive"]) and cal.y == sorted(cal.y)
    assert 0 <= cal.y[0] < cal.y[-1] <= 1


def test_the_manual_request_is_recorded_as_a_trigger_event(drifted: World, drift_job: TrainingJobRow) -> None:
    events = [e for e in drifted.store.events(kind=TRIGGER_EVENT) if e.payload.get("job_id") == drift_job.id]
    assert len(events) == 1
    payload = events[0].payload
    assert (payload["kind"], payload["fire"], payload["outcome"], payload["actor"]) == (
        "manual", True, "queued", "operator:ana")
    assert payload["request_reason"] == REASON and payload["total_labels"] == len(drifted.fleet)
    assert drift_job.trigger_id == f"trigger-{events[0].id}" and drift_job.trigger == "manual"


def test_a_sabotaged_candidate_is_rejected_and_its_record_shows_why(drifted: World) -> None:
    service = drifted.service(label_transform=lambda y: 1 - y)  # trained on flipped labels
    job = service.retrain_now(actor="test", reason="sabotage", now=drifted.clock(),
                              label_set_id=drifted.label_set_id)
    assert job.status == "succeeded", job.error  # the job worked; its candidate did not
    assert job.gate_verdict == "fail"
    row = drifted.registry.get(job.result_version or "")
    assert row.status == "rejected"
    gate = row.gate or {}
    failed = {c["name"] for c in gate["checks"] if not c["passed"]}
    assert {"recall", "false_alarm_rate"} <= failed
    assert any(r.startswith("recall: candidate") for r in gate["reasons"])
    assert gate["candidate"]["recall"] < gate["incumbent"]["recall"] - 0.2
    assert drifted.registry.manifest(row.version).training.params["label_transform"] == "custom"  # type: ignore[union-attr]
    audit = drifted.store.model_audit(version=row.version)
    assert (audit[-1].action, audit[-1].to_status) == ("gate", "rejected")
    assert "recall" in audit[-1].reason


def test_same_inputs_and_seed_give_the_same_onnx(drifted: World, drift_job: TrainingJobRow) -> None:
    again = drifted.service().retrain_now(actor="test", reason="again", now=drifted.clock(),
                                          label_set_id=drifted.label_set_id)
    first = drifted.registry.get(drift_job.result_version or "")
    second = drifted.registry.get(again.result_version or "")
    assert second.version != first.version
    assert int(second.version[1:]) > int(first.version[1:])  # v<N+1> after the highest
    assert second.sha256 == first.sha256
    assert second.manifest["training"]["data_fingerprint"] == first.manifest["training"]["data_fingerprint"]
    assert second.manifest["threshold"] == first.manifest["threshold"]


def test_a_retrain_without_an_active_model_fails_with_the_reason(drifted: World) -> None:
    store, now = drifted.store, drifted.clock()
    store.set_model_status("v1", "retired", actor="test", action="retire", reason="test", ts=now)
    try:
        job = drifted.service().retrain_now(actor="test", reason="no model", now=now,
                                            label_set_id=drifted.label_set_id)
    finally:
        store.set_model_status("v1", "active", actor="test", action="restore", reason="test", ts=now)
    assert job.status == "failed" and job.result_version is None
    assert job.error is not None and "no active model" in job.error


def test_a_reference_needs_no_labels_the_hubs_random_samples_of_recent_traffic_will_do(tmp_path: Path) -> None:
    """At a plant's label rate few random samples carry a label: the candidate's reference then comes from the
    random samples the hub holds, labelled or not (of the model's width; not the anomalies or low-confidence ones)."""
    store = SqliteHubStore(tmp_path / "hub.db")
    try:
        now = T0 + 10 * 86_400.0

        def sample(i: int, reason: str, width: int = 3, age: float = 60.0) -> Sample:
            ts = now - age - i
            return Sample(device_id="d1", ts=ts, trace_id=f"{reason}-{width}-{age}-{i}", window_start=ts - 5,
                          window_end=ts, score=0.1, threshold=0.5, decision=False, features=[float(i)] * width,
                          reason=reason, model_version="v1")

        messages = [*(sample(i, "random") for i in range(30)), *(sample(i, "low_confidence") for i in range(5)),
                    *(sample(i, "random", width=4) for i in range(5)),
                    *(sample(i, "random", age=3 * 86_400.0) for i in range(7))]  # older than a day
        store.ingest_batch([IngestRecord(m, now) for m in messages])
        retrainer = Retrainer(store, Registry(store, tmp_path / "models", SigningKey.generate()), TrainingSettings(),
                              labels=LabelSettings(), staging_dir=tmp_path / "staging", clock=lambda: now)
        X = retrainer._random_traffic(3, now)
        assert X.shape == (37, 3)  # fewer than REFERENCE_MAX_ROWS in any span: all of them within the label TTL
        assert sorted(X[:, 0].tolist()) == sorted([float(i) for i in range(30)] + [float(i) for i in range(7)])
    finally:
        store.close()
