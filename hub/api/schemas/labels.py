"""Bodies of ``/labels``: label sets with the account of what was left out, conflicts, pending traces."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from hub.api.schemas.base import Public
from hub.labels import REASONS, Reason
from hub.store.rows import Device, ExclusionRow, LabelItemRow, LabelSetRow, MissingTrace
from shared.messages import Label, Signal


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
