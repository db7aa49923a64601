"""A hub with something in every table the API reads, built through the real paths where the API has one.

For the schema fuzz run (`tests/hub/api/test_schema_fuzz.py`): an empty registry answers 404 or an empty list
to almost every request, so the fuzz never reaches the code that renders a version, a rollout or a label set.
Devices, predictions, stats and dead letters come in through the ingest path (there is no HTTP one);
annotations, the label set, the model versions (real signed ONNX), the rollout and the training job through
the HTTP API with the right role's token, as a technician and an operator make them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hub.store.rows import DeadLetter, TrainingJobRow
from shared.manifest import ModelManifest, load_manifest
from shared.messages import Stats
from tests.hub.api.conftest import T0, Hub, anomaly, online, sample
from tests.hub.rollout.test_service import variant

DEVICES = {"pump-1": "site-a", "pump-2": "site-a", "pump-3": "site-a", "fan-1": "site-b", "fan-2": "site-b"}
UNKNOWN_TRACE = "trace-not-seen-yet"  # annotated before its prediction arrives: a pending annotation


@dataclass
class Populated:
    """What `populate` made: the ids by the name the API gives them (path, query and body fields), so a fuzz
    case can name things that exist."""

    hub: Hub
    known: dict[str, list[str]] = field(default_factory=dict)


def _stats(manifest: ModelManifest, device: str, period_end: float, windows: int = 200) -> Stats:
    """A period as an agent of `manifest` reports it: counts in the reference's own proportions."""
    ref = manifest.reference
    feature_hist = [[round(windows * c / max(sum(h), 1)) for c in h] for h in ref.histograms]
    score_hist = [round(windows * c / max(sum(ref.score_histogram), 1)) for c in ref.score_histogram]
    return Stats(device_id=device, ts=period_end, model_version=manifest.version, period_start=period_end - 600,
                 period_end=period_end, windows=windows, anomalies=2, samples=1, bad_readings=0, bad_rows=0,
                 inference_errors=0, nan_scores=0, feature_hist=feature_hist, score_hist=score_hist,
                 latency_p50_ms=1.0, latency_p99_ms=2.5)


def populate(hub: Hub, model_dir: Path, work: Path) -> Populated:
    """Fill `hub` (fresh) with devices, predictions, stats, annotations, a label set, three versions (v1 active,
    v2 in a running rollout, v3 held by its gate), a failed training job, a drift report and dead letters."""
    tech, op = hub.client("technician"), hub.client("operator")
    manifest = load_manifest((model_dir / "manifest.json").read_text())
    traces: list[str] = []
    for i, (device, site) in enumerate(DEVICES.items()):
        fault, healthy = anomaly(device, ts=T0 + i), sample(device, ts=T0 + 100 + i, reason="low_confidence")
        traces += [fault.trace_id, healthy.trace_id]
        hub.ingest(online(device, site=site), fault, healthy,
                   *(_stats(manifest, device, T0 + 600 * k) for k in range(1, 4)))
    hub.store.ingest_batch([], [DeadLetter(topic="fleetloop/pump-1/anomaly", payload=b"{not json", reason="bad_json",
                                           detail="Expecting property name", ts=T0, device_id="pump-1")])
    hub.store.save_drift_report({"scope": "fleet", "verdict": "no_drift"}, "fleet", "no_drift", T0)

    annotations = []
    for k, trace in enumerate(traces):
        body = {"trace_id": trace, "label": "fault" if k % 2 == 0 else "no_fault", "technician_id": "ann"}
        made = tech.post("/annotations", json=body)
        assert made.status_code == 201, made.text
        annotations.append(made.json()["annotation_id"])
    pending = tech.post("/annotations", json={"trace_id": UNKNOWN_TRACE, "device_id": "pump-1", "label": "fault",
                                              "technician_id": "bob"})
    ranged = tech.post("/annotations", json={"device_id": "fan-1", "start_ts": T0 - 60, "end_ts": T0 + 60,
                                             "label": "fault", "technician_id": "bob", "signal": "correction"})
    assert pending.status_code == ranged.status_code == 201, (pending.text, ranged.text)
    annotations += [pending.json()["annotation_id"], ranged.json()["annotation_id"]]
    label_set = op.post("/labels/validate")
    assert label_set.status_code == 201, label_set.text

    registry = hub.services.registry
    assert registry is not None
    registry.register(model_dir, actor="operator:ana", reason="bootstrap", status="active")
    v2 = op.post("/models", json={"path": str(variant(model_dir, work / "v2", "v2")), "reason": "bench-tested",
                                  "skip_gate": True})
    v3 = op.post("/models", json={"path": str(variant(model_dir, work / "v3", "v3")), "reason": "from the lab"})
    assert v2.status_code == v3.status_code == 201, (v2.text, v3.text)
    rollout = op.post("/rollouts", json={"candidate": "v2", "reason": "drift at site-a"})
    assert rollout.status_code == 201, rollout.text
    refused = op.post("/retrain", json={"reason": "new labels"})  # 10 labels: the product's minimum is 500
    assert refused.status_code == 400 and "min_labels" in refused.text, (refused.status_code, refused.text)
    job = hub.store.create_training_job(TrainingJobRow(  # so a job the hub ran earlier, and failed: no HTTP path
        id="job-1", status="failed", stage="train", progress=0.4, trigger="manual", trigger_id="trigger-1",
        actor="operator:ana", reason="first try", label_set_id=label_set.json()["id"], result_version="v4",
        gate_verdict=None, error="the worker was killed", drift_cursor=0, created_ts=T0, started_ts=T0 + 1,
        finished_ts=T0 + 2, details={"labels": 10}))
    assert job is not None

    versions = ["v1", "v2", "v3"]
    return Populated(hub, {
        "device_id": list(DEVICES), "trace_id": [*traces, UNKNOWN_TRACE], "annotation_id": annotations,
        "label_set_id": [label_set.json()["id"]], "version": versions, "candidate": versions,
        "rollout_id": [rollout.json()["id"]], "job_id": [job.id],
    })
