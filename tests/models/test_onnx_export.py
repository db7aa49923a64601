"""ONNX conversion and the parity check, against a real onnxruntime session."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from models.errors import ConversionError, ParityError
from models.onnx_export import (
    INPUT_NAME,
    OUTPUT_NAME,
    onnx_scores,
    onnx_session,
    parity_check,
    to_onnx_bytes,
)
from models.training import positive_scores, train_classifier
from tests.models.conftest import SPEC, SmallModel


def test_onnx_contract_input_x_float_probabilities_no_zipmap(small_model: SmallModel) -> None:
    model = onnx.load_from_string(small_model.onnx_bytes)
    onnx.checker.check_model(model)
    (inp,) = model.graph.input
    assert inp.name == INPUT_NAME == "X"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = inp.type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value") and dims[1].dim_value == SPEC.n_features
    outputs = {o.name: o for o in model.graph.output}
    assert OUTPUT_NAME == "probabilities" in outputs
    assert outputs[OUTPUT_NAME].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert "ZipMap" not in {node.op_type for node in model.graph.node}


def test_conversion_is_byte_for_byte_reproducible(small_model: SmallModel) -> None:
    assert to_onnx_bytes(small_model.estimator, SPEC.n_features) == small_model.onnx_bytes


def test_parity_on_held_out_data(small_model: SmallModel) -> None:
    report = parity_check(small_model.estimator, small_model.onnx_bytes, small_model.hold.X, small_model.threshold)
    assert report.passed
    assert report.n == len(small_model.hold)
    assert report.max_abs_diff < 1e-5
    assert report.label_flips == 0
    scores = onnx_scores(onnx_session(small_model.onnx_bytes), small_model.hold.X)
    expected = positive_scores(small_model.estimator, small_model.hold.X)
    assert np.array_equal(scores >= small_model.threshold, expected >= small_model.threshold)


def test_a_model_converted_from_another_estimator_fails_parity(small_model: SmallModel) -> None:
    other = train_classifier(small_model.train.X, small_model.train.y, seed=99, params={"n_estimators": 5})
    wrong = to_onnx_bytes(other, SPEC.n_features)
    with pytest.raises(ParityError, match="parity failed") as caught:
        parity_check(small_model.estimator, wrong, small_model.hold.X, small_model.threshold)
    report = caught.value.report
    assert report is not None and not report.passed
    assert report.max_abs_diff > 1e-2 and report.label_flips > 0


def test_tolerances_are_the_callers(small_model: SmallModel) -> None:
    with pytest.raises(ParityError):
        parity_check(
            small_model.estimator, small_model.onnx_bytes, small_model.hold.X, small_model.threshold,
            max_abs_diff=0.0,
        )  # fmt: skip


def test_bytes_that_are_not_a_model_fail_parity(small_model: SmallModel) -> None:
    with pytest.raises(ParityError, match="does not run"):
        parity_check(small_model.estimator, b"not onnx", small_model.hold.X, 0.5)


def test_parity_needs_rows(small_model: SmallModel) -> None:
    with pytest.raises(ParityError, match="non-empty"):
        parity_check(small_model.estimator, small_model.onnx_bytes, np.empty((0, SPEC.n_features)), 0.5)


def test_random_forest_converts_with_parity(small_model: SmallModel) -> None:
    rf = train_classifier(
        small_model.train.X, small_model.train.y, seed=3, family="rf", params={"n_estimators": 15}
    )
    report = parity_check(rf, to_onnx_bytes(rf, SPEC.n_features), small_model.hold.X, 0.5)
    assert report.label_flips == 0


def test_an_unconvertible_estimator_is_a_conversion_error() -> None:
    with pytest.raises(ConversionError):
        to_onnx_bytes(object(), 3)  # type: ignore[arg-type]
