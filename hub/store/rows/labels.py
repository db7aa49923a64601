"""Rows of the label pipeline: label set items, exclusions, label sets, traces still missing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# --- labels ---------------------------------------------------------------------------------------

QueueReason = Literal["anomaly", "low_confidence", "random"]
"""Why a prediction is in the labeling queue: an anomaly, a low-confidence sample or the random baseline slice."""


@dataclass(frozen=True, slots=True)
class LabelItemRow:
    """One training label of a stored label set (1 fault, 0 no fault)."""

    trace_id: str
    device_id: str
    label: int
    weight: float
    confidence: float
    n_annotations: int
    cohort: str | None
    model_version: str | None


@dataclass(frozen=True, slots=True)
class ExclusionRow:
    """Why one annotation (for one trace, or None while pending) is not in a label set."""

    annotation_id: str
    trace_id: str | None
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class LabelSetRow:
    """A stored label set: its content-addressed id, first and latest validation, and its summary."""

    id: str
    fingerprint: str
    created_ts: float
    validated_ts: float
    summary: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MissingTrace:
    """A trace that annotations name (from `device_id`) but whose prediction the hub has not stored."""

    trace_id: str
    device_id: str
    n_annotations: int
    first_ts: float
    last_ts: float
