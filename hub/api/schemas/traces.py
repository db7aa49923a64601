"""Bodies of ``/traces``: a prediction, what technicians said about it, and where it stands in the labels."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hub.api.schemas.annotations import AnnotationPublic
from hub.api.schemas.base import Public
from hub.api.schemas.labels import ExclusionPublic, LabelItemPublic
from hub.store.rows import PredictionRow


class PredictionPublic(Public):
    trace_id: str
    kind: Literal["anomaly", "sample"]
    device_id: str
    ts: float
    received_at: float
    model_version: str | None
    unit: str | None
    window_start: float
    window_end: float
    score: float
    threshold: float
    decision: bool
    reason: str | None = Field(description="why a sample was sent (random, low_confidence, requested)")
    features: list[float]

    @classmethod
    def from_row(cls, row: PredictionRow) -> PredictionPublic:
        return cls(
            trace_id=row.trace_id, kind=row.kind, device_id=row.device_id, ts=row.ts, received_at=row.received_at,
            model_version=row.model_version, unit=row.unit, window_start=row.window_start,
            window_end=row.window_end, score=row.score, threshold=row.threshold, decision=row.decision,
            reason=row.reason, features=list(row.features),
        )


class TraceLabelPublic(Public):
    """Where the trace stands in the latest label set."""

    label_set_id: str
    label: LabelItemPublic | None = Field(description="its training label, if it has one")
    exclusions: list[ExclusionPublic] = Field(description="its annotations that were left out, and why")


class FeaturePublic(Public):
    name: str
    value: float


class FeatureMovePublic(Public):
    """A feature of the window against the model version's reference: value, reference mean, z-score."""

    name: str
    value: float
    reference_mean: float
    z: float


class ReadablePublic(Public):
    """The prediction as a technician reads it (the console's trace view)."""

    site: str | None
    asset_type: str | None
    window_start: str = Field(description="ISO 8601, UTC")
    window_end: str = Field(description="ISO 8601, UTC")
    score: str = Field(description="the score against the threshold, in words")
    named: bool = Field(description="feature names from the version's serving manifest (else f0, f1, …)")
    features: list[FeaturePublic]
    top_movers: list[FeatureMovePublic] = Field(
        description="the features furthest from the version's reference, by absolute z-score")


class RawWindowPublic(Public):
    """The raw sensor readings behind the prediction, as the device recorded them."""

    state: Literal["available", "requested", "not_requested", "not_available"] = Field(
        description="available: the readings below; requested: the hub asked the device and waits for them; "
        "not_requested: nobody asked yet (the hub asks for the window each open incident shows; POST "
        "/traces/{trace_id}/window asks for any other); not_available: the device no longer keeps this window, "
        "or never answered")
    unit: str | None = None
    sensors: list[str] = Field(default_factory=list, description="sensor names, one series each in `values`")
    timestamps: list[float] = Field(default_factory=list, description="unix seconds of each reading, oldest first")
    timestamps_iso: list[str] = Field(default_factory=list, description="the same in ISO 8601, UTC")
    values: list[list[float]] = Field(default_factory=list, description="values[i]: sensor i at each timestamp")
    requested_at: str | None = Field(default=None, description="when the hub asked the device (ISO 8601, UTC)")
    received_at: str | None = Field(default=None, description="when the answer arrived (ISO 8601, UTC)")


class TracePublic(Public):
    trace_id: str
    prediction: PredictionPublic | None = Field(description="null while the prediction has not arrived")
    readable: ReadablePublic | None = Field(default=None, description="null while the prediction has not arrived")
    raw_window: RawWindowPublic | None = Field(default=None, description="the raw sensor window; null while the "
                                               "prediction has not arrived")
    annotations: list[AnnotationPublic] = Field(description="by trace_id, and range annotations covering it")
    outcome: TraceLabelPublic | None = Field(description="null if the latest label set does not mention it")
