"""Bodies of ``/annotations``: a technician's label (`AnnotationCreate`) and a stored one (`AnnotationPublic`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, model_validator

from hub.api.schemas.base import DeviceId, Probability, Public
from hub.store.rows import AnnotationRow
from shared.messages import Label, Signal

AnnotationStatus = Literal["joined", "pending", "device_mismatch"]


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


class AnnotationBatch(BaseModel):
    """Many annotations in one request (``POST /annotations/batch``)."""

    model_config = ConfigDict(extra="forbid")

    annotations: list[AnnotationCreate] = Field(min_length=1, max_length=500)


class AnnotationBatchResult(Public):
    stored: int = Field(description="annotations stored now")
    unchanged: int = Field(description="annotations stored before with the same content (retries)")
