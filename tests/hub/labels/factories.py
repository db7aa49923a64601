"""Terse builders for annotations and predictions, with defaults that pass every validation rule."""

from __future__ import annotations

from typing import Any

from hub.labels.types import AnnotationRecord, PredictionRef
from shared.messages import Label, Signal

NOW = 10_000.0
TTL = 5_000.0
DEVICE = "pump-1"


def ann(
    annotation_id: str,
    trace_id: str | None = "t1",
    *,
    label: Label = "fault",
    tech: str = "ann",
    signal: Signal = "confirmed",
    confidence: float = 1.0,
    created: float = 9_000.0,
    device: str = DEVICE,
    start: float | None = None,
    end: float | None = None,
    **extra: Any,
) -> AnnotationRecord:
    return AnnotationRecord(
        annotation_id=annotation_id,
        device_id=device,
        label=label,
        technician_id=tech,
        signal=signal,
        confidence=confidence,
        created_ts=created,
        trace_id=trace_id,
        start_ts=start,
        end_ts=end,
        **extra,
    )


def pred(
    trace_id: str = "t1",
    ts: float = 8_000.0,
    *,
    device: str = DEVICE,
    cohort: str | None = "site-a",
    feature_set_version: int | None = 1,
    model_version: str | None = "m1",
) -> PredictionRef:
    return PredictionRef(trace_id, device, ts, model_version, feature_set_version, cohort)
