"""``/queue``: what technicians should label next."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hub.api.deps import AUTH_RESPONSES, LabelSettingsDep, NowDep, StoreDep, Technician
from hub.api.schemas.queue import QueueItem
from hub.labels.service import labeling_queue

router = APIRouter(prefix="/queue", tags=["labels"], responses=AUTH_RESPONSES)


@router.get("", summary="The labeling queue")
def get_queue(
    _: Technician,
    store: StoreDep,
    labels: LabelSettingsDep,
    now: NowDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    device_id: Annotated[str | None, Query(max_length=64, description="only this device's predictions")] = None,
    offset: Annotated[int, Query(ge=0, le=10_000, description="skip this many (paging: offset += limit)")] = 0,
    since: Annotated[float | None, Query(allow_inf_nan=False, description="only predictions made at ts >= since "
                                         "(a technician's desk that has worked the older ones)")] = None,
) -> list[QueueItem]:
    """Predictions without an annotation yet and younger than the label TTL: anomalies (highest score first),
    then low-confidence samples (closest to the threshold first), then the random baseline slice (newest first);
    or, with the hub's ``labels.queue_policy = "select"``, as the label-selection policy ranks them under
    ``labels.queue_budget`` (``pick`` says why each was chosen).
    Page with ``offset`` (the queue is ranked over ``offset + limit`` candidates, then cut).
    """
    return [
        QueueItem(
            trace_id=e.prediction.trace_id, device_id=e.prediction.device_id, ts=e.prediction.ts,
            window_end=e.prediction.window_end,
            score=e.prediction.score, threshold=e.prediction.threshold, kind=e.prediction.kind, reason=e.reason,
            model_version=e.prediction.model_version, pick=e.pick,
        )
        for e in labeling_queue(store, labels, now=now, limit=offset + limit, device_id=device_id,
                                since=since)[offset:]
    ]
