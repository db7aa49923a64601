"""``/annotations``: technicians label traces or time ranges; the same store path as MQTT annotations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from hub.api.deps import AUTH_RESPONSES, MetricsDep, NowDep, Reader, StoreDep, Technician, error
from hub.api.schemas.annotations import AnnotationBatch, AnnotationBatchResult, AnnotationCreate, AnnotationPublic
from hub.labels.service import annotation_status, range_predictions
from hub.store.rows import AnnotationRow, IngestRecord
from shared.messages import Annotation

router = APIRouter(prefix="/annotations", tags=["annotations"], responses=AUTH_RESPONSES)

_SAME_FIELDS = ("trace_id", "start_ts", "end_ts", "label", "fault_type", "technician_id", "confidence", "signal",
                "note")


def _same(row: AnnotationRow, body: AnnotationCreate, device_id: str) -> bool:
    return row.device_id == device_id and all(getattr(row, f) == getattr(body, f) for f in _SAME_FIELDS)


def _public(store: StoreDep, row: AnnotationRow) -> AnnotationPublic:
    return AnnotationPublic.from_row(row, annotation_status(store, [row])[row.annotation_id])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Label a trace or a device's time range",
    responses={
        200: {"model": AnnotationPublic, "description": "This annotation_id was stored before with the same content"},
        **error(400, "The target does not fit: a trace of another device, or an unknown trace without device_id"),
        **error(404, "The device is not known to the hub"),
        **error(409, "This annotation_id was stored before with other content"),
    },
)
def create_annotation(
    body: AnnotationCreate, response: Response, _: Technician, store: StoreDep, metrics: MetricsDep, now: NowDep
) -> AnnotationPublic:
    """Store a technician's annotation exactly as an MQTT annotation is stored (``HubStore.ingest_batch``).

    An annotation of a trace the hub has not seen yet is accepted as ``pending`` (it names the device the
    trace comes from) and joins when the prediction arrives; ``GET /labels/pending`` lists such traces so the
    hub can ask their devices to upload them.
    """
    held, message = _checked(body, store, now)
    if held is not None:
        return _replay(held, body, held.device_id, response, store)
    assert message is not None
    result = store.ingest_batch([IngestRecord(message, received_at=now)])
    for kind, n in result.stored.items():
        metrics.ingested.labels(kind=kind).inc(n)
    row = store.annotation(message.annotation_id)
    assert row is not None  # stored now, or by a concurrent retry
    if result.duplicates:  # a concurrent request with the same annotation_id won the race
        return _replay(row, body, message.device_id, response, store)
    return _public(store, row)


@router.post(
    "/batch",
    status_code=status.HTTP_201_CREATED,
    summary="Label many traces or ranges at once (a technician's day, an app syncing after being offline)",
    responses={
        **error(400, "An item's target does not fit (the detail names the item)"),
        **error(404, "An item's device is not known to the hub"),
        **error(409, "An item's annotation_id was stored before with other content"),
    },
)
def create_annotations(
    body: AnnotationBatch, _: Technician, store: StoreDep, metrics: MetricsDep, now: NowDep
) -> AnnotationBatchResult:
    """Every item checked as ``POST /annotations`` checks one, then all stored in one transaction, or none if an
    item is refused. Items stored before with the same content (a retry) count as ``unchanged``."""
    messages: list[Annotation] = []
    unchanged = 0
    for i, item in enumerate(body.annotations):
        try:
            held, message = _checked(item, store, now)
            if held is not None and not _same(held, item, held.device_id):
                raise HTTPException(status.HTTP_409_CONFLICT, detail=f"annotation {held.annotation_id} was stored "
                                    "before with other content; choose a new annotation_id")
        except HTTPException as exc:
            raise HTTPException(exc.status_code, detail=f"annotations[{i}]: {exc.detail}") from None
        if message is None:
            unchanged += 1
        else:
            messages.append(message)
    result = store.ingest_batch([IngestRecord(m, received_at=now) for m in messages])
    for kind, n in result.stored.items():
        metrics.ingested.labels(kind=kind).inc(n)
    return AnnotationBatchResult(stored=sum(result.stored.values()),
                                 unchanged=unchanged + sum(result.duplicates.values()))


def _checked(body: AnnotationCreate, store: StoreDep, now: float) -> tuple[AnnotationRow | None, Annotation | None]:
    """The stored annotation with `body`'s id (a retry), or the message to store; HTTPException if refused."""
    model_version: str | None = None
    if body.trace_id is not None:
        prediction = store.prediction(body.trace_id)
        if prediction is not None:
            if body.device_id is not None and body.device_id != prediction.device_id:
                raise HTTPException(
                    status.HTTP_400_BAD_REQUEST,
                    detail=f"trace {body.trace_id} belongs to device {prediction.device_id}, not {body.device_id}",
                )
            device_id, model_version = prediction.device_id, prediction.model_version
        elif body.device_id is None:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                detail=f"trace {body.trace_id} is not known to the hub yet: give the device_id it comes from, so the "
                "annotation can wait for it (pending) and the device can be asked to upload it",
            )
        else:
            device_id = body.device_id
    else:
        assert body.device_id is not None  # AnnotationCreate: a range names its device
        device_id = body.device_id
    if store.device(device_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"device {device_id} is not known to the hub")
    if body.trace_id is None and body.start_ts is not None and body.end_ts is not None:
        known = range_predictions(store, device_id, body.start_ts, body.end_ts)
        model_version = known[-1].model_version if known else None

    if body.annotation_id is not None and (held := store.annotation(body.annotation_id)) is not None:
        if held.device_id != device_id:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                detail=f"annotation {held.annotation_id} was stored before with other content; choose a new "
                "annotation_id",
            )
        return held, None
    fields = body.model_dump(exclude={"device_id", "annotation_id"})
    if body.annotation_id is not None:
        fields["annotation_id"] = body.annotation_id
    return None, Annotation(device_id=device_id, ts=now, model_version=model_version, **fields)


def _replay(
    held: AnnotationRow, body: AnnotationCreate, device_id: str, response: Response, store: StoreDep
) -> AnnotationPublic:
    if not _same(held, body, device_id):
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"annotation {held.annotation_id} was stored before with other content; choose a new annotation_id",
        )
    response.status_code = status.HTTP_200_OK
    return _public(store, held)


@router.get("", summary="List annotations (oldest first)")
def list_annotations(
    _: Reader,
    store: StoreDep,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
    trace_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[float | None, Query(allow_inf_nan=False, description="ts >= since")] = None,
    until: Annotated[float | None, Query(allow_inf_nan=False, description="ts < until")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AnnotationPublic]:
    """Annotations made in ``[since, until)``, oldest first; page on with ``since`` = the last ``ts``."""
    rows = store.annotations(since=since, until=until, device_id=device_id, trace_id=trace_id, limit=limit)
    statuses = annotation_status(store, rows)
    return [AnnotationPublic.from_row(r, statuses[r.annotation_id]) for r in rows]


@router.get("/{annotation_id}", summary="One annotation", responses=error(404, "No annotation with this id"))
def get_annotation(
    annotation_id: Annotated[str, Path(max_length=64)], _: Reader, store: StoreDep
) -> AnnotationPublic:
    row = store.annotation(annotation_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no annotation {annotation_id}")
    return _public(store, row)
