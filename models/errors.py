"""Errors of model building, under `shared.errors.ModelError` so the CLI and hub edges translate them.

    ModelError (shared.errors)
    ├── TrainingError       the data cannot make a model (one class only, no positives to tune on, …)
    ├── ConversionError     skl2onnx cannot convert the estimator
    ├── ParityError         the ONNX artifact does not score like the estimator it came from
    └── VersionExistsError  a version directory is already there; versions are never overwritten
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.errors import ModelError

if TYPE_CHECKING:
    from models.onnx_export import ParityReport


class TrainingError(ModelError):
    """The training or validation data cannot make or tune a model."""


class ConversionError(ModelError):
    """The estimator cannot be converted to ONNX."""


class ParityError(ModelError):
    """ONNX and scikit-learn disagree beyond tolerance; `report` holds the numbers when they were measured."""

    def __init__(self, message: str, report: ParityReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class VersionExistsError(ModelError):
    """The version directory already exists (and is not empty)."""
