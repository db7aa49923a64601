"""``/labels``: validate annotations into versioned label sets; conflicts and pending traces."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from hub.api.deps import AUTH_RESPONSES, LabelSettingsDep, MetricsDep, NowDep, Operator, Reader, StoreDep, error
from hub.api.schemas.labels import (
    ConflictPublic,
    ExclusionPublic,
    LabelItemPublic,
    LabelSetCreated,
    LabelSetDetail,
    LabelSetPublic,
    PendingTrace,
    VotePublic,
)
from hub.labels.service import conflicts, missing_traces, validate_and_save

router = APIRouter(prefix="/labels", tags=["labels"], responses=AUTH_RESPONSES)


@router.post(
    "/validate",
    status_code=status.HTTP_201_CREATED,
    summary="Validate annotations into a label set",
    responses={200: {"model": LabelSetCreated, "description": "The same label set (same id) was stored before"}},
)
def validate_labels(
    response: Response, _: Operator, store: StoreDep, labels: LabelSettingsDep, metrics: MetricsDep, now: NowDep
) -> LabelSetCreated:
    """Join every stored annotation with the stored predictions, validate (duplicates, stale, untrainable
    signals, unreliable annotators, conflicts), build the fingerprinted label set and store it with a reason
    for every exclusion. The id is content-addressed: the same labels under the same rules give the same id.
    """
    saved = validate_and_save(store, labels, now=now)
    if not saved.created:
        response.status_code = status.HTTP_200_OK
    result = LabelSetCreated(**LabelSetPublic.from_row(saved.row).model_dump(), created=saved.created)
    metrics.labels_validated.set(result.n_items)
    return result


@router.get("/sets", summary="Stored label sets (latest validated first)")
def list_label_sets(
    _: Reader, store: StoreDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> list[LabelSetPublic]:
    return [LabelSetPublic.from_row(r) for r in store.label_sets(limit=limit)]


@router.get("/sets/{label_set_id}", summary="One label set with its items and exclusions",
            responses=error(404, "No label set with this id"))
def get_label_set(
    label_set_id: Annotated[str, Path(max_length=64)],
    _: Reader,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=100_000, description="at most this many items and exclusions")] = 1000,
) -> LabelSetDetail:
    row = store.label_set(label_set_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no label set {label_set_id}")
    return LabelSetDetail(
        **LabelSetPublic.from_row(row).model_dump(),
        items=[LabelItemPublic.from_row(i) for i in store.label_set_items(label_set_id, limit=limit)],
        exclusions=[ExclusionPublic.from_row(e) for e in store.label_exclusions(label_set_id, limit=limit)],
    )


@router.get("/conflicts", summary="Traces whose annotations reach no consensus")
def list_conflicts(
    _: Reader,
    store: StoreDep,
    labels: LabelSettingsDep,
    now: NowDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="at most this many conflicts")] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="skip this many (by trace id)")] = 0,
) -> list[ConflictPublic]:
    """Computed now from the stored annotations (not from the last label set), with every vote; by trace id."""
    return [
        ConflictPublic(
            trace_id=c.outcome.trace_id, device_id=c.outcome.device_id, cohort=c.outcome.cohort,
            model_version=c.outcome.model_version, confidence=c.outcome.confidence,
            weight_fault=c.outcome.weight_fault, weight_no_fault=c.outcome.weight_no_fault,
            votes=[
                VotePublic(annotation_id=v.annotation_id, technician_id=v.technician_id,
                           label=v.label, signal=v.signal, confidence=v.confidence,  # type: ignore[arg-type]
                           ts=v.ts, note=v.note)
                for v in c.votes
            ],
        )
        for c in conflicts(store, labels, now=now, limit=limit, offset=offset)
    ]


@router.get("/pending", summary="Traces annotated but not yet seen by the hub")
def list_pending(
    _: Reader,
    store: StoreDep,
    labels: LabelSettingsDep,
    now: NowDep,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[PendingTrace]:
    """Trace ids that annotations younger than the label TTL name and whose prediction has not arrived,
    oldest first: what to ask each device to upload (the ``upload_traces`` command)."""
    devices = {d.device_id: d for d in store.devices()}
    return [
        PendingTrace.from_row(m, devices.get(m.device_id))
        for m in missing_traces(store, labels, now=now, device_id=device_id, limit=limit)
    ]
