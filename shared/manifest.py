"""The manifest of a model version: everything needed to serve, verify, monitor and audit it."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from shared.features import REGIMES, WindowSpec, feature_names
from shared.regimes import RegimeStats, setting_columns
from shared.wire import Wire, finite

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
SIGNATURE_FILE = "manifest.sig"


class Reference(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Reference distribution of the training features, as bin edges and counts per feature."""

    bin_edges: list[list[float]]
    histograms: list[list[int]]
    score_bin_edges: list[float]
    score_histogram: list[int]

    def __post_init__(self) -> None:
        for edges in self.bin_edges:
            finite(edges, "bin edges")
        finite(self.score_bin_edges, "score bin edges")
        if len(self.bin_edges) != len(self.histograms):
            raise ValueError("one histogram per feature's bin edges")
        for edges, counts in zip(self.bin_edges, self.histograms, strict=True):
            if len(counts) != len(edges) + 1:
                raise ValueError("a histogram has len(edges) + 1 bins")
            if any(b <= a for a, b in itertools.pairwise(edges)):
                raise ValueError("bin edges must be strictly increasing")
        if len(self.score_histogram) != len(self.score_bin_edges) + 1:
            raise ValueError("the score histogram has len(score_bin_edges) + 1 bins")


class SampleWeighting(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the training rows were weighted against each other (`hub.training.weighting`): the base set (simulated
    or reference data) and the field labels, their total weights as fitted, and the factor the base set was scaled
    by so that the field's share of the weight is at least `field_min_share`."""

    method: Literal["fixed", "field_share"]
    base_row_weight: float  # each base row's configured weight
    field_row_weight: float  # each field label's weight × this (before recency decay and cohort balance)
    field_min_share: float
    half_life_s: float | None = None  # recency decay of field labels by data time; None: none
    base_scale: float = 1.0  # applied to every base row
    base_total: float  # as fitted, after scaling
    field_total: float
    field_share: float | None = None  # field_total / (base_total + field_total); None without rows

    def __post_init__(self) -> None:
        finite((self.base_row_weight, self.field_row_weight, self.field_min_share, self.half_life_s,
                self.base_scale, self.base_total, self.field_total, self.field_share), "sample weighting")


class Calibration(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Score -> probability of a failure, piecewise linear through (`x`, `y`) and flat beyond them: an isotonic fit
    on labelled rows the model did not train on (`fitted_on`), for estimating performance without labels
    (`hub.training.estimate`)."""

    method: Literal["isotonic"] = "isotonic"
    x: list[float]  # scores, non-decreasing
    y: list[float]  # probabilities in [0, 1], non-decreasing
    fitted_on: Literal["eval", "validation"]
    n: int
    n_positive: int

    def __post_init__(self) -> None:
        finite(self.x, "calibration scores")
        finite(self.y, "calibration probabilities")
        if not self.x or len(self.x) != len(self.y):
            raise ValueError("calibration needs one probability per score, and at least one")
        if any(b < a for a, b in itertools.pairwise(self.x)) or any(b < a for a, b in itertools.pairwise(self.y)):
            raise ValueError("calibration scores and probabilities must be non-decreasing")
        if not all(0.0 <= v <= 1.0 for v in self.y):
            raise ValueError("calibration probabilities lie in [0, 1]")


class TrainingInfo(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which data made the model: enough to reproduce it and to audit it."""

    data_fingerprint: str
    n_samples: int
    n_positive: int
    seed: int
    data_kind: Literal["simulated", "real", "mixed"]
    label_set_version: str | None = None
    sources: list[str] = msgspec.field(default_factory=list)
    params: dict[str, float | int | str | None] = msgspec.field(default_factory=dict)
    weighting: SampleWeighting | None = None  # older manifests have none


class Provenance(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Who made the version, when and why."""

    created_by: str
    reason: str
    trigger_id: str | None = None


class ModelManifest(Wire, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What ``manifest.json`` holds; read it with `load_manifest`, write it with `dump_manifest`."""

    schema_version: Literal[1] = 1
    version: Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")]
    parent_version: str | None = None
    created: str  # ISO 8601, UTC
    model_family: str
    window: WindowSpec
    feature_names: list[str]
    input_name: str
    output_name: str
    threshold: Annotated[float, Meta(ge=0.0, le=1.0)]
    low_confidence_margin: Annotated[float, Meta(ge=0.0, le=0.5)] = 0.1
    reference: Reference
    training: TrainingInfo
    provenance: Provenance
    library_versions: dict[str, str]
    metrics: dict[str, float]
    cohort_metrics: dict[str, dict[str, float]] = msgspec.field(default_factory=dict)
    calibration: Calibration | None = None  # older manifests, and versions made without held-out labels: none
    regimes: RegimeStats | None = None  # feature set 2's regime statistics (`shared.regimes`); set 1: none
    onnx_sha256: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")]

    def __post_init__(self) -> None:
        if not (0.0 <= self.threshold <= 1.0 and 0.0 <= self.low_confidence_margin <= 0.5):
            raise ValueError("threshold lies in [0, 1] and low_confidence_margin in [0, 0.5]")
        if self.feature_names != feature_names(self.window.sensors, self.window.feature_set_version):
            raise ValueError("feature_names do not match the window's sensors and the feature set")
        if (self.regimes is not None) != (self.window.feature_set_version == REGIMES):
            raise ValueError(f"regime statistics come with feature set {REGIMES}, and only with it")
        if self.regimes is not None:
            setting_columns(self.regimes, self.window.sensors)  # ValueError when they do not fit the window
        if len(self.reference.bin_edges) != len(self.feature_names):
            raise ValueError("one set of reference bin edges per feature")


_MANIFEST_DECODER = msgspec.json.Decoder(ModelManifest)


def same_inputs(a: ModelManifest, b: ModelManifest) -> bool:
    """Whether feature vectors computed for `a` are what `b` scores: the same window (sensors, size, step, feature
    set) and the same regime statistics (a retrain keeps its parent's, unless it learned the field's)."""
    return a.window == b.window and a.regimes == b.regimes


def load_manifest(data: bytes | str | Mapping[str, Any]) -> ModelManifest:
    """A manifest from its JSON (``manifest.json``) or its plain data (a stored row); ValueError if invalid.

    The error (msgspec.ValidationError, or msgspec.DecodeError for bad JSON) names the first bad field.
    """
    if isinstance(data, Mapping):
        return msgspec.convert(data, ModelManifest)
    return _MANIFEST_DECODER.decode(data)


def dump_manifest(manifest: ModelManifest, *, indent: int = 0) -> bytes:
    """The JSON of `manifest`: compact, or indented by `indent` spaces (``manifest.json`` uses 2)."""
    if manifest.regimes is None:  # feature set 1: the JSON agents older than feature set 2 read (unknown fields
        data = msgspec.to_builtins(manifest)  # are refused), so no "regimes": null
        del data["regimes"]
        raw = msgspec.json.encode(data)
    else:
        raw = msgspec.json.encode(manifest)
    return msgspec.json.format(raw, indent=indent) if indent else raw


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
