"""Request (`XCreate`) and response (`XPublic`) bodies of the hub API: what the OpenAPI schema documents.

Responses are built from store rows with ``from_row``; requests refuse unknown fields like every wire message.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, model_validator

from hub.labels import REASONS, Reason
from hub.store.rows import (
    AnnotationRow,
    Device,
    DriftReportRow,
    ExclusionRow,
    LabelItemRow,
    LabelSetRow,
    MissingTrace,
    PredictionRow,
    QueueReason,
)
from shared.messages import DeviceId, Label, Probability, Signal

AnnotationStatus = Literal["joined", "pending", "device_mismatch"]


class Public(BaseModel):
    """Base of response bodies: documented fields only."""

    model_config = ConfigDict(extra="forbid")


class ErrorPublic(BaseModel):
    """An error: what went wrong and, where it helps, what to send instead."""

    detail: str


# --- annotations ----------------------------------------------------------------------------------


class AnnotationCreate(BaseModel):
    """A technician's label for one trace, or for a device's time range ``[start_ts, end_ts]``."""

    model_config = ConfigDict(extra="forbid")

    trace_id: str | None = Field(default=None, min_length=1, max_length=64, description="the prediction labelled")
    device_id: DeviceId | None = Field(
        default=None,
        description="required for a range, and for a trace the hub has not seen yet; must match a known trace",
    )
    start_ts: FiniteFloat | None = Field(default=None, description="range start (unix s, device clock)")
    end_ts: FiniteFloat | None = Field(default=None, description="range end, inclusive")
    label: Label
    fault_type: str | None = Field(default=None, max_length=64)
    technician_id: str = Field(min_length=1, max_length=64)
    confidence: Probability = 1.0
    signal: Signal = Field(default="confirmed", description="how the verdict was reached, best signal first")
    note: str | None = Field(default=None, max_length=2000)
    annotation_id: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="client-chosen id for safe retries: posting the same annotation again returns it (200)",
    )

    @model_validator(mode="after")
    def _target(self) -> AnnotationCreate:
        has_range = self.start_ts is not None or self.end_ts is not None
        if self.trace_id is not None and has_range:
            raise ValueError("give a trace_id or a start_ts/end_ts range, not both")
        if self.trace_id is None:
            if self.start_ts is None or self.end_ts is None:
                raise ValueError("an annotation needs a trace_id, or device_id with both start_ts and end_ts")
            if self.device_id is None:
                raise ValueError("a range annotation needs a device_id")
            if self.end_ts < self.start_ts:
                raise ValueError("end_ts is before start_ts")
        return self


class AnnotationPublic(Public):
    annotation_id: str
    device_id: str
    ts: float = Field(description="when the technician made it (unix s)")
    received_at: float = Field(description="when the hub stored it (hub clock)")
    model_version: str | None
    trace_id: str | None
    start_ts: float | None
    end_ts: float | None
    label: Label
    fault_type: str | None
    technician_id: str
    confidence: float
    signal: Signal
    note: str | None
    status: AnnotationStatus = Field(
        description="joined: its prediction(s) are known; pending: waiting for them; device_mismatch: the trace "
        "belongs to another device"
    )

    @classmethod
    def from_row(cls, row: AnnotationRow, status: AnnotationStatus) -> AnnotationPublic:
        return cls(
            annotation_id=row.annotation_id, device_id=row.device_id, ts=row.ts, received_at=row.received_at,
            model_version=row.model_version, trace_id=row.trace_id, start_ts=row.start_ts, end_ts=row.end_ts,
            label=row.label,  # type: ignore[arg-type]
            fault_type=row.fault_type, technician_id=row.technician_id, confidence=row.confidence,
            signal=row.signal,  # type: ignore[arg-type]
            note=row.note, status=status,
        )


# --- predictions, traces, queue -------------------------------------------------------------------


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


class ExclusionPublic(Public):
    annotation_id: str
    trace_id: str | None
    reason: Reason
    detail: str

    @classmethod
    def from_row(cls, row: ExclusionRow) -> ExclusionPublic:
        return cls(annotation_id=row.annotation_id, trace_id=row.trace_id, reason=row.reason,  # type: ignore[arg-type]
                   detail=row.detail)


class LabelItemPublic(Public):
    trace_id: str
    device_id: str
    label: Literal[0, 1] = Field(description="1: fault, 0: no fault")
    weight: float
    confidence: float
    n_annotations: int
    cohort: str | None
    model_version: str | None

    @classmethod
    def from_row(cls, row: LabelItemRow) -> LabelItemPublic:
        return cls(
            trace_id=row.trace_id, device_id=row.device_id, label=1 if row.label else 0, weight=row.weight,
            confidence=row.confidence, n_annotations=row.n_annotations, cohort=row.cohort,
            model_version=row.model_version,
        )


class TraceLabelPublic(Public):
    """Where the trace stands in the latest label set."""

    label_set_id: str
    label: LabelItemPublic | None = Field(description="its training label, if it has one")
    exclusions: list[ExclusionPublic] = Field(description="its annotations that were left out, and why")


class TracePublic(Public):
    trace_id: str
    prediction: PredictionPublic | None = Field(description="null while the prediction has not arrived")
    annotations: list[AnnotationPublic] = Field(description="by trace_id, and range annotations covering it")
    outcome: TraceLabelPublic | None = Field(description="null if the latest label set does not mention it")


class QueueItem(Public):
    trace_id: str
    device_id: str
    ts: float
    score: float
    threshold: float
    kind: Literal["anomaly", "sample"]
    reason: QueueReason = Field(description="anomaly, low_confidence or random (the baseline slice)")
    model_version: str | None


# --- devices, drift -------------------------------------------------------------------------------


class DevicePublic(Public):
    device_id: str
    online: bool
    last_seen: float | None = Field(description="hub time of its newest message")
    model_version: str | None
    shadow_version: str | None
    agent_version: str | None
    site: str | None
    asset_type: str | None
    cohort: str | None = Field(description="explicit cohort, else its site")
    status_ts: float | None
    last_ts: float | None
    first_seen: float | None

    @classmethod
    def from_device(cls, d: Device) -> DevicePublic:
        return cls(
            device_id=d.device_id, online=d.online, last_seen=d.last_seen, model_version=d.model_version,
            shadow_version=d.shadow_version, agent_version=d.agent_version, site=d.site, asset_type=d.asset_type,
            cohort=d.cohort, status_ts=d.status_ts, last_ts=d.last_ts, first_seen=d.first_seen,
        )


class DriftReportPublic(Public):
    id: int
    ts: float
    scope: str
    verdict: str
    report: dict[str, Any] = Field(description="DriftReport.to_dict(): per-feature PSI, tests, drifted features")

    @classmethod
    def from_row(cls, row: DriftReportRow) -> DriftReportPublic:
        return cls(id=row.id, ts=row.ts, scope=row.scope, verdict=row.verdict, report=row.report)


# --- labels ---------------------------------------------------------------------------------------


class CohortCount(Public):
    n: int
    n_fault: int
    weight: float


class CohortSharePublic(Public):
    cohort: str | None
    share: float
    limit: float
    by: Literal["weight", "count"]
    ok: bool = Field(description="false: one cohort dominates the labels (feedback-loop bias)")


class ConflictSummary(Public):
    trace_id: str
    device_id: str
    confidence: float
    weight_fault: float
    weight_no_fault: float
    annotation_ids: list[str]


class LabelSetPublic(Public):
    """A stored label set: what a training run names, and the account of everything left out."""

    id: str = Field(description="ls- + the first 16 hex digits of the fingerprint: same labels and rules, same id")
    fingerprint: str
    created_ts: float = Field(description="when this content was first validated")
    validated_ts: float = Field(description="when it was last validated")
    n_items: int
    n_fault: int
    n_no_fault: int
    total_weight: float
    n_annotations: int
    excluded: dict[str, int] = Field(description=f"exclusions per reason ({', '.join(REASONS)})")
    n_excluded: int
    n_pending: int
    n_conflicts: int
    missing_trace_ids: int = Field(description="traces named by pending annotations that the hub has not seen")
    reported_untrainable: dict[str, int] = Field(description="thumbs-style annotations per label, never trained on")
    cohorts: dict[str, CohortCount]
    cohort_share: CohortSharePublic
    conflicts: list[ConflictSummary]
    unreliable_technicians: list[str]
    rules: dict[str, Any]

    @classmethod
    def from_row(cls, row: LabelSetRow) -> LabelSetPublic:
        fields = {k: v for k, v in row.summary.items() if k in cls.model_fields}
        return cls.model_validate({**fields, "id": row.id, "fingerprint": row.fingerprint,
                                   "created_ts": row.created_ts, "validated_ts": row.validated_ts})


class LabelSetCreated(LabelSetPublic):
    created: bool = Field(description="false: the same label set (same id) had been validated before")


class LabelSetDetail(LabelSetPublic):
    items: list[LabelItemPublic]
    exclusions: list[ExclusionPublic]


class VotePublic(Public):
    annotation_id: str
    technician_id: str
    label: Label
    signal: Signal
    confidence: float
    ts: float
    note: str | None


class ConflictPublic(Public):
    trace_id: str
    device_id: str
    cohort: str | None
    model_version: str | None
    confidence: float = Field(description="winning share of the vote weight, below the agreement threshold")
    weight_fault: float
    weight_no_fault: float
    votes: list[VotePublic]


class PendingTrace(Public):
    trace_id: str
    device_id: str
    n_annotations: int
    first_annotated: float
    last_annotated: float
    device_known: bool = Field(description="the device is in the registry, so it can be asked to upload the trace")
    device_online: bool

    @classmethod
    def from_row(cls, row: MissingTrace, device: Device | None) -> PendingTrace:
        return cls(
            trace_id=row.trace_id, device_id=row.device_id, n_annotations=row.n_annotations,
            first_annotated=row.first_ts, last_annotated=row.last_ts, device_known=device is not None,
            device_online=device is not None and device.online,
        )


# --- health ---------------------------------------------------------------------------------------


class HealthPublic(Public):
    status: Literal["ok"]
    dev_mode: bool
    counts: dict[str, int]
