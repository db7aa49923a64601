"""ONNX inference on one slow core: one intra-op thread, validated I/O, a warm-up run on load.

Session options are chosen for a small device that scores one window at a time (measured with
``bench/onnx_options.py``): no memory arena and no memory pattern (the arena keeps the largest batch's
buffers for good, a pattern pre-plans buffers for a shape the agent never repeats at scale), basic graph
optimisations (constant folding and redundant-node removal; the extended and layout passes target
convolutions and GPUs, not the tree ensembles and small MLPs a gateway runs), one thread that never spins.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from shared.errors import ModelLoadError
from shared.manifest import ModelManifest


def session_options() -> ort.SessionOptions:
    """The agent's onnxruntime session options: one thread, small memory footprint (see the module docstring)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class OnnxModel:
    """A loaded model version: `score(features)` returns the failure probability of each row."""

    def __init__(self, manifest: ModelManifest, onnx_bytes: bytes) -> None:
        self.manifest = manifest
        self.version = manifest.version
        self.threshold = manifest.threshold
        options = session_options()
        try:
            self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises several untyped errors for a broken artifact
            raise ModelLoadError(f"model {manifest.version}: onnxruntime cannot load it: {exc}") from exc
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        if manifest.input_name not in inputs:
            raise ModelLoadError(f"model {manifest.version}: no input named {manifest.input_name!r}")
        if manifest.output_name not in outputs:
            raise ModelLoadError(f"model {manifest.version}: no output named {manifest.output_name!r}")
        width = inputs[manifest.input_name].shape[-1]
        n_features = len(manifest.feature_names)
        if isinstance(width, int) and width != n_features:
            raise ModelLoadError(
                f"model {manifest.version}: takes {width} features but the manifest names {n_features}"
            )
        self._input = manifest.input_name
        self._outputs = [manifest.output_name]
        self.n_features = n_features
        warm = self.score(np.zeros((1, n_features), dtype=np.float32))  # warm-up: first run allocates
        if warm.shape != (1,):
            raise ModelLoadError(f"model {manifest.version}: output shape {warm.shape} is not one score per row")

    def score(self, features: np.ndarray) -> np.ndarray:
        """Positive-class probability for each row of a ``(n, n_features)`` float32 array."""
        out = self.session.run(self._outputs, {self._input: features})[0]
        return out[:, -1] if out.ndim == 2 else out

    def rewarm(self, features: np.ndarray) -> None:
        """Run the model on `features`, result unused: brings its tables back into the CPU caches (not a scoring)."""
        self.session.run(self._outputs, {self._input: features})
