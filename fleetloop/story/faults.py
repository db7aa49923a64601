"""Candidates that must never reach the fleet, made on purpose to show the loop's two safety nets.

- `sabotaged_retrain`: a retrain on the hub's real labels with every label flipped (as a mislabelled label set
  would give). The gate must reject it; a rollout of it must be refused.
- `nan_candidate`: a candidate that misbehaves on gateways only. Its ONNX graph is valid and loads, but every
  probability it gives is NaN. The hub's gate would catch NaN scores on its own evaluation slice, so it is
  registered as a candidate directly: it stands for a model that passed on the hub and breaks on the devices'
  runtime. Its canary's health check must fail and the hub must roll it back automatically.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from hub.labels.service import LabelSettings
from hub.registry.service import Registry
from hub.store import HubStore
from hub.store.rows import TrainingJobRow
from hub.training.service import TrainingService
from hub.training.settings import TrainingSettings
from shared.manifest import MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE, sha256_bytes

__all__ = ["nan_candidate", "nan_onnx", "sabotaged_retrain"]


def nan_onnx(n_features: int) -> bytes:
    """A valid ONNX model with the initial model's input/output names whose probabilities are all NaN."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, n_features])
    y = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])
    weights = helper.make_tensor("W", TensorProto.FLOAT, [n_features, 2], [0.0] * (2 * n_features))
    bias = helper.make_tensor("B", TensorProto.FLOAT, [2], [float("nan")] * 2)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Z"]), helper.make_node("Add", ["Z", "B"], ["probabilities"])],
        "nan_model", [x], [y], initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def nan_candidate(parent_dir: Path, out: Path, *, version: str, parent_version: str) -> Path:
    """A copy of the version in `parent_dir` at `out` whose model gives NaN: new version, parent and sha256,
    unsigned (the registry signs what it registers)."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(parent_dir, out)
    (out / SIGNATURE_FILE).unlink(missing_ok=True)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    onnx = nan_onnx(len(manifest["feature_names"]))
    (out / MODEL_FILE).write_bytes(onnx)
    manifest.update(version=version, parent_version=parent_version, onnx_sha256=sha256_bytes(onnx))
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    return out


def sabotaged_retrain(store: HubStore, registry: Registry, settings: TrainingSettings, *, labels: LabelSettings,
                      staging_dir: Path, actor: str, reason: str, label_set_id: str | None = None,
                      now: float | None = None) -> TrainingJobRow:
    """Retrain now, in this thread, on `label_set_id` (default: the current labels, validated now) with every label
    flipped, and gate the result against the active version like any candidate (recorded as a manual retrain,
    ``label_transform: custom``)."""
    service = TrainingService(store, registry, settings, labels=labels, staging_dir=staging_dir,
                              label_transform=lambda y: 1 - y)
    return service.retrain_now(actor=actor, reason=reason, now=time.time() if now is None else now,
                               label_set_id=label_set_id)
