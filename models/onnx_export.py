"""Convert a fitted classifier to ONNX, and prove the artifact scores like the estimator.

The ONNX contract agents rely on: one input ``X`` float32 ``[N, n_features]``; an output
``probabilities`` float32 ``[N, 2]`` whose column 1 is the failure probability (no ZipMap), plus ``label``.
Opsets are pinned low enough for the onnxruntime versions gateways run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType

from models.errors import ConversionError, ParityError
from models.training import Classifier, positive_scores

INPUT_NAME = "X"
OUTPUT_NAME = "probabilities"
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
_GRAPH_NAME = "fleetloop"  # fixed, or skl2onnx names the graph with a random uuid and the bytes differ


def to_onnx_bytes(estimator: Classifier, n_features: int) -> bytes:
    """The serialised ONNX model of `estimator`: identical bytes for identical estimators."""
    try:
        model = convert_sklearn(
            estimator,
            name=_GRAPH_NAME,
            initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
            options={id(estimator): {"zipmap": False}},
            target_opset=TARGET_OPSET,
        )
    except Exception as exc:  # skl2onnx raises many types for unsupported models
        raise ConversionError(f"cannot convert {type(estimator).__name__} to ONNX: {exc}") from exc
    outputs = [o.name for o in model.graph.output]
    if OUTPUT_NAME not in outputs:
        raise ConversionError(f"converted model has outputs {outputs}, expected {OUTPUT_NAME!r}")
    return bytes(model.SerializeToString())


def onnx_session(onnx_bytes: bytes) -> ort.InferenceSession:
    """A single-threaded CPU session, as on a gateway."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def onnx_scores(session: ort.InferenceSession, X: np.ndarray) -> np.ndarray:
    """Failure probability (column 1 of ``probabilities``) of each row, as float64."""
    (proba,) = session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(X, dtype=np.float32)})
    proba = np.asarray(proba)
    if proba.ndim != 2 or proba.shape != (X.shape[0], 2):
        raise ParityError(f"{OUTPUT_NAME!r} has shape {proba.shape}, expected ({X.shape[0]}, 2)")
    return proba[:, 1].astype(np.float64)


@dataclass(slots=True, frozen=True)
class ParityReport:
    """How far ONNX scores are from scikit-learn's on `n` rows, and the tolerances they were held to."""

    n: int
    max_abs_diff: float
    label_flips: int
    threshold: float
    allowed_abs_diff: float
    allowed_label_flips: int

    @property
    def passed(self) -> bool:
        # written so that a NaN difference fails
        return bool(self.max_abs_diff <= self.allowed_abs_diff and self.label_flips <= self.allowed_label_flips)

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def parity_check(
    estimator: Classifier,
    onnx_bytes: bytes,
    X: np.ndarray,
    threshold: float,
    *,
    max_abs_diff: float = 1e-4,
    max_label_flips: int = 0,
) -> ParityReport:
    """Score `X` with the estimator and with a real onnxruntime session; raise ParityError on disagreement.

    Compares the positive-class probability (max absolute difference) and the decisions at `threshold`.
    A model that does not load or run also fails parity.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ParityError(f"parity needs a non-empty (n, features) array, got shape {X.shape}")
    expected = positive_scores(estimator, X)
    try:
        got = onnx_scores(onnx_session(onnx_bytes), X)
    except ParityError:
        raise
    except Exception as exc:  # onnxruntime raises its own exception types for bad models/inputs
        raise ParityError(f"the ONNX model does not run: {exc}") from exc
    diff = np.abs(expected - got)
    report = ParityReport(
        n=int(X.shape[0]),
        max_abs_diff=float(np.max(diff)) if np.all(np.isfinite(diff)) else float("nan"),
        label_flips=int(np.sum((expected >= threshold) != (got >= threshold))),
        threshold=float(threshold),
        allowed_abs_diff=float(max_abs_diff),
        allowed_label_flips=int(max_label_flips),
    )
    if not report.passed:
        raise ParityError(
            f"ONNX parity failed on {report.n} rows: max |diff| {report.max_abs_diff:.3g} "
            f"(allowed {max_abs_diff:.3g}), {report.label_flips} decision flips at {threshold:.4f} "
            f"(allowed {max_label_flips})",
            report,
        )
    return report
