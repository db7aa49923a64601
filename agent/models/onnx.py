"""ONNX inference on one slow core: one intra-op thread, validated I/O, a warm-up run on load.

Session options are chosen for a small device that scores one window at a time (measured with
``bench/onnx_options.py``): no memory arena and no memory pattern (the arena keeps the largest batch's
buffers for good, a pattern pre-plans buffers for a shape the agent never repeats at scale), basic graph
optimisations (constant folding and redundant-node removal; the extended and layout passes target
convolutions and GPUs, not the tree ensembles and small MLPs a gateway runs), one thread that never spins.
"""

from __future__ import annotations

import threading

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
        # One RunOptions for every run: without one, onnxruntime makes a default one per call (~1 us).
        self._run_options = ort.RunOptions()
        self._one: _OneRow | None = None
        zeros = np.zeros((1, n_features), dtype=np.float32)
        try:  # warm-up (the first run allocates); its raw output shapes the bound buffers
            raw = self.session.run(self._outputs, {self._input: zeros}, self._run_options)[0]
        except Exception as exc:  # onnxruntime's errors are untyped
            raise ModelLoadError(f"model {manifest.version}: onnxruntime cannot run it: {exc}") from exc
        warm = raw[:, -1] if getattr(raw, "ndim", 0) == 2 else raw
        if getattr(warm, "shape", None) != (1,):
            raise ModelLoadError(f"model {manifest.version}: output shape {getattr(warm, 'shape', type(warm))} is not "
                                 "one score per row")
        self._one = _OneRow.bind(self.session, self._input, manifest.output_name, zeros, raw)

    def score(self, features: np.ndarray) -> np.ndarray:
        """Positive-class probability for each row of a ``(n, n_features)`` float32 array."""
        return self._run(features)

    def rewarm(self, features: np.ndarray) -> None:
        """Run the model on `features`, result unused: brings its tables back into the CPU caches (not a scoring)."""
        self._run(features)

    def _run(self, features: np.ndarray) -> np.ndarray:
        one = self._one
        if one is not None and features.shape == one.shape and features.dtype == np.float32 \
                and one.lock.acquire(blocking=False):
            try:
                one.x[...] = features
                self.session.run_with_iobinding(one.binding)  # (with a RunOptions it takes ~38 us, not 4)
                return one.scores.copy()
            finally:
                one.lock.release()
        out = self.session.run(self._outputs, {self._input: features}, self._run_options)[0]
        return out[:, -1] if out.ndim == 2 else out


class _OneRow:
    """One window's input and output, bound once (`onnxruntime.IOBinding` over numpy buffers): a live source's
    windows are scored one at a time, and ``run`` spends more of such a call checking its arguments and wrapping
    arrays than the tree ensemble spends scoring (one row: 7-8 us with ``run``, ~4 us bound, on this project's
    machine). Not shared between threads: a second caller while one is scoring takes ``run`` instead (`lock`)."""

    def __init__(self, binding: ort.IOBinding, x: np.ndarray, scores: np.ndarray,
                 values: tuple[ort.OrtValue, ...]) -> None:
        self.binding, self.x, self.scores = binding, x, scores
        self._values = values  # the bound OrtValues, kept with the buffers they wrap
        self.shape = x.shape
        self.lock = threading.Lock()

    @classmethod
    def bind(cls, session: ort.InferenceSession, input_name: str, output_name: str, x: np.ndarray,
             probe: object) -> _OneRow | None:
        """The buffers bound: `x` (one row) as the input, and an output shaped as `probe`, the model's output for `x`
        from ``run``; None where that is not a plain tensor (``run`` then)."""
        if not isinstance(probe, np.ndarray) or probe.dtype.kind != "f":
            return None
        try:
            y = np.zeros_like(probe)
            values = ort.OrtValue.ortvalue_from_numpy(x), ort.OrtValue.ortvalue_from_numpy(y)
            binding = session.io_binding()
            binding.bind_ortvalue_input(input_name, values[0])
            binding.bind_ortvalue_output(output_name, values[1])
            session.run_with_iobinding(binding)
        except Exception:  # onnxruntime's errors are untyped: this is only a shortcut, `run` still works
            return None
        return cls(binding, x, y[:, -1] if y.ndim == 2 else y, values)
