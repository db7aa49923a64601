"""OnnxModel's session is set up for a small device: one non-spinning thread, no arena, basic optimisations;
and scores the same as a session with onnxruntime's defaults (the options change memory, never the answer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from agent.models.onnx import OnnxModel
from infra.versions import read_version
from shared.errors import ModelLoadError


def test_the_session_uses_the_small_device_options(initial_model_dir: Path) -> None:
    manifest, onnx_bytes = read_version(initial_model_dir)
    model = OnnxModel(manifest, onnx_bytes)
    options = model.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert not options.enable_cpu_mem_arena and not options.enable_mem_pattern
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"

    reference = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    X = np.random.default_rng(3).normal(size=(64, model.n_features)).astype(np.float32)
    expected = reference.run([manifest.output_name], {manifest.input_name: X})[0]
    expected = expected[:, -1] if expected.ndim == 2 else expected
    np.testing.assert_allclose(model.score(X), expected, rtol=1e-6, atol=1e-7)


def test_one_window_at_a_time_scores_as_a_batch(initial_model_dir: Path) -> None:
    """A live source's windows go one at a time through buffers bound once (IOBinding): each must score as it does in a
    batch, and a returned score must not change when the next window is scored into the same buffer."""
    model = OnnxModel(*read_version(initial_model_dir))
    assert model._one is not None  # the initial model's output is a plain tensor: the bound path is taken
    X = np.random.default_rng(5).normal(size=(50, model.n_features)).astype(np.float32)
    batch = model.score(X)
    singles = [model.score(X[i : i + 1]) for i in range(len(X))]
    assert all(s.shape == (1,) for s in singles)
    np.testing.assert_array_equal(np.concatenate(singles), batch)
    # a float64 row is not silently cast on the bound path: onnxruntime refuses it, as for a batch
    try:
        model.score(X[:1].astype(np.float64))
    except Exception as exc:  # onnxruntime's errors are untyped
        assert "double" in str(exc) or "float" in str(exc)
    else:
        raise AssertionError("a float64 window was scored")


def test_a_model_that_fails_on_its_warm_up_is_refused_with_a_load_error(initial_model_dir: Path) -> None:
    """A graph onnxruntime loads but cannot run (a Reshape the window's width does not divide) is refused at load with
    ModelLoadError, as a graph it cannot load is, never an untyped onnxruntime error at the first window."""
    import onnx
    from onnx import TensorProto, helper

    manifest, _ = read_version(initial_model_dir)
    width = len(manifest.feature_names)
    assert width % 7 != 0  # the Reshape below cannot take one row
    graph = helper.make_graph(
        [helper.make_node("Reshape", [manifest.input_name, "shape"], [manifest.output_name])],
        "unrunnable",
        [helper.make_tensor_value_info(manifest.input_name, TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info(manifest.output_name, TensorProto.FLOAT, [None, None])],
        [helper.make_tensor("shape", TensorProto.INT64, [2], [7, -1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with pytest.raises(ModelLoadError, match="cannot run it"):
        OnnxModel(manifest, model.SerializeToString())
    onnx.checker.check_model(model)  # a valid graph: only running it fails
