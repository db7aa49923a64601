"""A trace as a technician reads it: named features (from the serving manifest), the device's site and asset,
ISO times, the score against the threshold, the features that moved most, and what people said about it."""

from __future__ import annotations

from dataclasses import dataclass

from hub.app.wiring import Services
from hub.console.words import FeatureMove, feature_moves, score_words
from hub.store.rows import AnnotationRow, Device, PredictionRow
from shared.manifest import ModelManifest

TOP_FEATURES = 5


@dataclass(frozen=True)
class ReadableTrace:
    trace_id: str
    prediction: PredictionRow | None
    device: Device | None
    features: list[tuple[str, float]]
    moves: list[FeatureMove]
    score: str
    annotations: list[AnnotationRow]
    named: bool  # whether the names come from the manifest (else f0, f1, …)


def _manifest(services: Services, version: str | None) -> ModelManifest | None:
    if version is None or services.registry is None:
        return None
    return services.registry.manifest(version)


def readable_trace(services: Services, trace_id: str) -> ReadableTrace:
    """Everything the console shows of `trace_id` (a trace the hub has not seen has no prediction)."""
    store = services.store
    prediction = store.prediction(trace_id)
    annotations = store.annotations(trace_id=trace_id)
    if prediction is None:
        return ReadableTrace(trace_id, None, None, [], [], "", annotations, False)
    annotations += store.annotations_covering(prediction.device_id, prediction.ts)
    manifest = _manifest(services, prediction.model_version)
    values = list(prediction.features)
    named = manifest is not None and len(manifest.feature_names) == len(values)
    names = manifest.feature_names if manifest is not None and named else [f"f{i}" for i in range(len(values))]
    moves = [] if manifest is None or not named else feature_moves(
        values, names, manifest.reference.bin_edges, manifest.reference.histograms, top=TOP_FEATURES)
    return ReadableTrace(trace_id, prediction, store.device(prediction.device_id),
                         list(zip(names, values, strict=True)), moves,
                         score_words(prediction.score, prediction.threshold), annotations, named)
