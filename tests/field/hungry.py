"""A valid, signed-able ONNX model that allocates `mb` megabytes per inference (issue 10 #3), built with `onnx`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from shared.manifest import MANIFEST_FILE, MODEL_FILE, sha256_bytes


def hungry_onnx(input_name: str, output_name: str, n_features: int, mb: int) -> bytes:
    """Scores 0.5 for every row, after expanding the input to an `mb` MB float tensor and summing it."""
    rows = mb * 1024 * 1024 // (4 * n_features)
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["shape"], value=helper.make_tensor("s", TensorProto.INT64, [2],
                                                                                   [rows, n_features])),
            helper.make_node("Slice", [input_name, "zero", "one", "zero"], ["first"]),  # (1, F): the first row
            helper.make_node("Expand", ["first", "shape"], ["big"]),  # (rows, F): `mb` MB, depends on the input
            helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
            helper.make_node("ReduceSum", [input_name, "one"], ["per_row"], keepdims=0),  # (n,)
            helper.make_node("Mul", ["per_row", "nil"], ["zeros"]),
            helper.make_node("Mul", ["total", "nil"], ["zero_total"]),
            helper.make_node("Add", ["zeros", "zero_total"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], [output_name]),
        ],
        "hungry",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [None])],
        initializer=[helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
                     helper.make_tensor("one", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("nil", TensorProto.FLOAT, [], [0.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def hungry_version(src: Path, dst: Path, version: str, mb: int) -> Path:
    """A copy of version dir `src` as `version` whose model allocates `mb` MB per inference (unsigned)."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / MANIFEST_FILE).read_text())
    onnx_bytes = hungry_onnx(manifest["input_name"], manifest["output_name"], len(manifest["feature_names"]), mb)
    (dst / MODEL_FILE).write_bytes(onnx_bytes)
    manifest.update(version=version, onnx_sha256=sha256_bytes(onnx_bytes))
    (dst / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    (dst / "manifest.sig").unlink(missing_ok=True)
    return dst
