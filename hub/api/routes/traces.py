"""``/traces/{trace_id}``: one prediction, everything technicians said about it, and its label."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from hub.api.deps import AUTH_RESPONSES, Reader, ServicesDep, Technician, error
from hub.api.schemas.annotations import AnnotationPublic
from hub.api.schemas.labels import ExclusionPublic, LabelItemPublic
from hub.api.schemas.traces import (
    FeatureMovePublic,
    FeaturePublic,
    PredictionPublic,
    RawWindowPublic,
    ReadablePublic,
    TraceLabelPublic,
    TracePublic,
)
from hub.console.trace import RawWindowView, ReadableTrace, readable_trace, request_window
from hub.console.words import iso
from hub.labels.service import annotation_status
from hub.store.ports import HubStore

router = APIRouter(prefix="/traces", tags=["traces"], responses=AUTH_RESPONSES)


def _outcome(store: HubStore, trace_id: str) -> TraceLabelPublic | None:
    latest = store.label_sets(limit=1)
    if not latest:
        return None
    label_set_id = latest[0].id
    items = store.label_set_items(label_set_id, trace_id=trace_id)
    exclusions = store.label_exclusions(label_set_id, trace_id=trace_id)
    if not items and not exclusions:
        return None
    return TraceLabelPublic(
        label_set_id=label_set_id,
        label=LabelItemPublic.from_row(items[0]) if items else None,
        exclusions=[ExclusionPublic.from_row(e) for e in exclusions],
    )


@router.get(
    "/{trace_id}",
    summary="A trace: prediction, annotations and label",
    responses=error(404, "The hub knows neither a prediction nor an annotation of this trace"),
)
def get_trace(trace_id: Annotated[str, Path(max_length=64)], _: Reader, services: ServicesDep) -> TracePublic:
    """The prediction (features, score, model version, device), the same in words (named features, site and
    asset, ISO times, the score against the threshold, the features that moved most against the version's
    reference), all its annotations (by trace id and by ranges covering it) and where it stands in the latest
    label set; and the raw sensor window with its state (``POST /traces/{trace_id}/window`` asks the device)."""
    store = services.store
    trace = readable_trace(services, trace_id)
    prediction, rows = trace.prediction, trace.annotations
    if prediction is None and not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no prediction or annotation of trace {trace_id}")
    statuses = annotation_status(store, rows)
    return TracePublic(
        trace_id=trace_id,
        prediction=None if prediction is None else PredictionPublic.from_row(prediction),
        readable=_readable(trace),
        raw_window=None if prediction is None else _raw_window(trace),
        annotations=[AnnotationPublic.from_row(r, statuses[r.annotation_id]) for r in rows],
        outcome=_outcome(store, trace_id),
    )


def _readable(trace: ReadableTrace) -> ReadablePublic | None:
    p = trace.prediction
    if p is None:
        return None
    return ReadablePublic(
        site=trace.device.site if trace.device else None,
        asset_type=trace.device.asset_type if trace.device else None,
        window_start=iso(p.window_start), window_end=iso(p.window_end), score=trace.score, named=trace.named,
        features=[FeaturePublic(name=n, value=v) for n, v in trace.features],
        top_movers=[FeatureMovePublic(name=m.name, value=m.value, reference_mean=m.mean, z=m.z) for m in trace.moves],
    )


@router.post(
    "/{trace_id}/window",
    summary="Ask the device for a trace's raw sensor window",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**error(404, "The hub has no prediction of this trace"),
               **error(503, "The hub has no broker connection to ask devices through")},
)
def request_trace_window(trace_id: Annotated[str, Path(max_length=64)], _: Technician,
                         services: ServicesDep) -> RawWindowPublic:
    """Ask the prediction's device (technician or operator) to send the raw readings of this window; the answer
    shows in ``GET /traces/{trace_id}``. Asking again while a request is open does nothing; an unanswered request is
    re-sent by the hub's raw-window job, then given up (``not_available``)."""
    prediction = services.store.prediction(trace_id)
    if prediction is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no prediction of trace {trace_id}")
    view = request_window(services, prediction)
    if view is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="this hub process cannot reach devices")
    return _window_public(view)


def _raw_window(trace: ReadableTrace) -> RawWindowPublic:
    return _window_public(trace.window)


def _window_public(w: RawWindowView) -> RawWindowPublic:
    return RawWindowPublic(
        state=w.state, unit=w.unit, sensors=list(w.sensors), timestamps=list(w.timestamps),
        timestamps_iso=[iso(t) for t in w.timestamps], values=[list(v) for v in w.values],
        requested_at=None if w.requested_ts is None else iso(w.requested_ts),
        received_at=None if w.received_ts is None else iso(w.received_ts),
    )
