"""``/traces/{trace_id}``: one prediction, everything technicians said about it, and its label."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from hub.api.deps import AUTH_RESPONSES, Reader, StoreDep, error
from hub.api.schemas.annotations import AnnotationPublic
from hub.api.schemas.labels import ExclusionPublic, LabelItemPublic
from hub.api.schemas.traces import PredictionPublic, TraceLabelPublic, TracePublic
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
def get_trace(trace_id: Annotated[str, Path(max_length=64)], _: Reader, store: StoreDep) -> TracePublic:
    """The prediction (features, score, model version, device), all its annotations (by trace id and by
    ranges covering it) and where it stands in the latest label set."""
    prediction = store.prediction(trace_id)
    rows = store.annotations(trace_id=trace_id)
    if prediction is not None:
        rows += store.annotations_covering(prediction.device_id, prediction.ts)
    if prediction is None and not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no prediction or annotation of trace {trace_id}")
    statuses = annotation_status(store, rows)
    return TracePublic(
        trace_id=trace_id,
        prediction=None if prediction is None else PredictionPublic.from_row(prediction),
        annotations=[AnnotationPublic.from_row(r, statuses[r.annotation_id]) for r in rows],
        outcome=_outcome(store, trace_id),
    )
