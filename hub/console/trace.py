"""A trace as a technician reads it: named features (from the serving manifest), the device's site and asset,
ISO times, the score against the threshold, the features that moved most, and what people said about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hub.app.wiring import Services
from hub.console.words import FeatureMove, feature_moves, score_words
from hub.store.rows import AnnotationRow, Device, PredictionRow, RawWindowRow
from shared.manifest import ModelManifest

TOP_FEATURES = 5


WindowState = Literal["available", "requested", "not_requested", "not_available"]


@dataclass(frozen=True)
class RawWindowView:
    """The raw sensor window of a trace: ``available`` (the readings), ``requested`` (the hub asked the device and
    waits), ``not_requested`` (nobody asked yet: the hub asks for the window each open incident shows, a technician
    for any other), or ``not_available`` (the device no longer keeps it, or never answered)."""

    state: WindowState
    unit: str | None = None
    sensors: tuple[str, ...] = ()
    timestamps: tuple[float, ...] = ()
    values: tuple[tuple[float, ...], ...] = ()
    received_ts: float | None = None
    requested_ts: float | None = None
    window_start: float | None = None  # the prediction's: readings before it are context (feature set 2)

    @property
    def context_readings(self) -> int:
        """How many readings come before the window's first (the history feature set 2 sends with a window)."""
        if self.window_start is None:
            return 0
        return sum(1 for t in self.timestamps if t < self.window_start)


NO_WINDOW = RawWindowView("not_requested")


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
    window: RawWindowView = field(default=NO_WINDOW)


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
                         score_words(prediction.score, prediction.threshold), annotations, named,
                         raw_window(services, prediction))


def raw_window(services: Services, prediction: PredictionRow) -> RawWindowView:
    """The trace's raw window as the hub holds it (reading it never asks the device: see `request_window`)."""
    row = services.store.raw_window(prediction.trace_id)
    return NO_WINDOW if row is None or row.device_id != prediction.device_id else _view(row, prediction.window_start)


def request_window(services: Services, prediction: PredictionRow) -> RawWindowView | None:
    """Ask the prediction's device for its raw window (once; the job re-asks); None when the hub has no broker."""
    if services.windows is None:
        return None
    services.windows.request(prediction.device_id, prediction.trace_id)
    return raw_window(services, prediction)


def _view(row: RawWindowRow, window_start: float | None = None) -> RawWindowView:
    if row.state == "stored":
        return RawWindowView("available", row.unit, row.sensors, row.timestamps, row.values, row.received_ts,
                             row.requested_ts, window_start)
    state: WindowState = "requested" if row.state == "requested" else "not_available"
    return RawWindowView(state, row.unit, received_ts=row.received_ts, requested_ts=row.requested_ts)
