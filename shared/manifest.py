"""The manifest of a model version: everything needed to serve, verify, monitor and audit it."""

from __future__ import annotations

import hashlib
import itertools
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, model_validator

from shared.features import WindowSpec, feature_names

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
SIGNATURE_FILE = "manifest.sig"


class Reference(BaseModel):
    """Reference distribution of the training features, as bin edges and counts per feature."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bin_edges: list[list[FiniteFloat]]
    histograms: list[list[int]]
    score_bin_edges: list[FiniteFloat]
    score_histogram: list[int]

    @model_validator(mode="after")
    def _shapes(self) -> Reference:
        if len(self.bin_edges) != len(self.histograms):
            raise ValueError("one histogram per feature's bin edges")
        for edges, counts in zip(self.bin_edges, self.histograms, strict=True):
            if len(counts) != len(edges) + 1:
                raise ValueError("a histogram has len(edges) + 1 bins")
            if any(b <= a for a, b in itertools.pairwise(edges)):
                raise ValueError("bin edges must be strictly increasing")
        if len(self.score_histogram) != len(self.score_bin_edges) + 1:
            raise ValueError("the score histogram has len(score_bin_edges) + 1 bins")
        return self


class TrainingInfo(BaseModel):
    """Which data made the model: enough to reproduce it and to audit it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_fingerprint: str
    n_samples: int
    n_positive: int
    seed: int
    data_kind: Literal["simulated", "real", "mixed"]
    label_set_version: str | None = None
    sources: list[str] = Field(default_factory=list)
    params: dict[str, float | int | str | None] = Field(default_factory=dict)


class Provenance(BaseModel):
    """Who made the version, when and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    created_by: str
    reason: str
    trigger_id: str | None = None


class ModelManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    version: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    parent_version: str | None = None
    created: str  # ISO 8601, UTC
    model_family: str
    window: WindowSpec
    feature_names: list[str]
    input_name: str
    output_name: str
    threshold: float = Field(ge=0.0, le=1.0)
    low_confidence_margin: float = Field(default=0.1, ge=0.0, le=0.5)
    reference: Reference
    training: TrainingInfo
    provenance: Provenance
    library_versions: dict[str, str]
    metrics: dict[str, float]
    cohort_metrics: dict[str, dict[str, float]] = Field(default_factory=dict)
    onnx_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _consistent(self) -> ModelManifest:
        if self.feature_names != feature_names(self.window.sensors):
            raise ValueError("feature_names do not match the window's sensors and the feature set")
        if len(self.reference.bin_edges) != len(self.feature_names):
            raise ValueError("one set of reference bin edges per feature")
        return self


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
