"""Hypothesis strategies: small fleets of predictions and annotations that hit every rule."""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import strategies as st

from hub.labels.signals import SIGNALS
from hub.labels.types import AnnotationRecord, PredictionRef, Vote
from shared.messages import Signal

DEVICES = ("pump-1", "pump-2")
TECHNICIANS = ("ann", "ben", "cy", "zed")
LABELS = ("fault", "no_fault")
NOW = 2_000.0

timestamps = st.integers(min_value=900, max_value=2_000).map(float)
trainable: list[Signal] = ["confirmed", "confirmed", "correction", "escalation", "rating"]
signals = st.sampled_from(trainable) | st.sampled_from(SIGNALS)
confidences = st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]) | st.floats(min_value=0.0, max_value=1.0)


@dataclass(frozen=True)
class Scenario:
    annotations: list[AnnotationRecord]
    predictions: list[PredictionRef]
    ttl_s: float
    schema_changed_at: float | None
    unreliable: frozenset[str]


@st.composite
def predictions(draw: st.DrawFn) -> list[PredictionRef]:
    n = draw(st.integers(min_value=0, max_value=5))
    return [
        PredictionRef(
            trace_id=f"t{i}",
            device_id=draw(st.sampled_from(DEVICES)),
            ts=draw(timestamps),
            model_version="m1",
            feature_set_version=draw(st.sampled_from([1, 1, 1, 0, None])),
            cohort=draw(st.sampled_from(["site-a", "site-b", None])),
        )
        for i in range(n)
    ]


@st.composite
def annotation(draw: st.DrawFn, annotation_id: str, traces: list[PredictionRef]) -> AnnotationRecord:
    kind = draw(st.sampled_from(["known"] * 6 + ["unknown", "range", "range"]))
    device = draw(st.sampled_from(DEVICES))
    trace_id: str | None = None
    start = end = None
    if kind == "known" and traces:
        target = draw(st.sampled_from(traces))
        trace_id = target.trace_id
        device = target.device_id if draw(st.integers(0, 9)) else device  # mostly the right device
    elif kind == "range":
        start = draw(timestamps)
        end = start + draw(st.integers(min_value=0, max_value=800))
    else:
        trace_id = f"u{draw(st.integers(0, 3))}"
    return AnnotationRecord(
        annotation_id=annotation_id,
        device_id=device,
        label=draw(st.sampled_from(LABELS)),
        technician_id=draw(st.sampled_from(TECHNICIANS)),
        signal=draw(signals),
        confidence=draw(confidences),
        created_ts=draw(timestamps),
        trace_id=trace_id,
        start_ts=start,
        end_ts=end,
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    preds = draw(predictions())
    n = draw(st.integers(min_value=0, max_value=14))
    annotations: list[AnnotationRecord] = []
    for i in range(n):
        if annotations and draw(st.integers(0, 4)) == 0:  # a re-sent copy under a new id
            copy = draw(st.sampled_from(annotations))
            annotations.append(replace(copy, annotation_id=f"a{i:02d}", created_ts=draw(timestamps)))
        else:
            annotations.append(draw(annotation(f"a{i:02d}", preds)))
    return Scenario(
        annotations=annotations,
        predictions=preds,
        ttl_s=draw(st.sampled_from([800.0, 10_000.0, 10_000.0])),
        schema_changed_at=draw(st.sampled_from([None, None, 1_000.0])),
        unreliable=draw(st.frozensets(st.sampled_from(TECHNICIANS), max_size=1)),
    )


@st.composite
def votes(draw: st.DrawFn, max_traces: int = 4, max_size: int = 16) -> list[Vote]:
    """Votes over a few traces, several per trace, from a few technicians, with arbitrary confidences."""
    n = draw(st.integers(min_value=1, max_value=max_size))
    return [
        Vote(
            annotation_id=f"v{i:02d}",
            trace_id=f"t{draw(st.integers(0, max_traces - 1))}",
            technician_id=draw(st.sampled_from(TECHNICIANS)),
            label=draw(st.sampled_from(LABELS)),
            signal=draw(st.sampled_from(SIGNALS)),
            confidence=draw(confidences),
        )
        for i in range(n)
    ]
