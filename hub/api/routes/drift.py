"""``/drift``: the stored drift reports, and the drift reference of a version taken from the fleet's own traffic."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi import Path as PathParam

from hub.api.deps import AUTH_RESPONSES, NowDep, Operator, Reader, ServicesDep, StoreDep, error
from hub.api.schemas.drift import DriftReferenceCreate, DriftReferencePublic, DriftReferenceStatus, DriftReportPublic
from hub.drift.service import DriftService
from hub.errors import DriftReferenceError, RegistryError

router = APIRouter(prefix="/drift", tags=["drift"], responses=AUTH_RESPONSES)


def get_drift(services: ServicesDep) -> DriftService:
    """The drift service; 503 when the hub runs without one."""
    if services.drift is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="this hub runs without drift")
    return services.drift


DriftDep = Annotated[DriftService, Depends(get_drift)]


@router.get("", summary="Latest drift reports (newest first)")
def list_drift_reports(
    _: Reader,
    store: StoreDep,
    scope: Annotated[
        str | None, Query(max_length=200, description="fleet, cohort:<name>, device:<id>; all scopes if omitted")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[DriftReportPublic]:
    return [DriftReportPublic.from_row(r) for r in store.drift_reports(limit=limit, scope=scope)]


@router.post(
    "/reference",
    status_code=status.HTTP_201_CREATED,
    summary="(Re)take a version's drift reference from a window of live traffic judged healthy",
    responses={
        **error(400, "No healthy stats of the version in the window, or fewer windows than drift.min_samples"),
        **error(404, "No manifest for this version"),
    },
)
def take_reference(
    body: DriftReferenceCreate, principal: Operator, drift: DriftDep, now: NowDep
) -> DriftReferencePublic:
    """Build the reference from the agents' stats of `version` in ``[start, end)`` over the manifest's bins (agents
    need no new manifest), store it as the version's current reference and record it in the version's audit trail.
    Left out as not healthy: stats periods alarming on more than ``drift.reference_max_anomaly_rate`` of their
    windows, and devices whose latest report against the version's stored reference says drift."""
    actor = principal.role if body.actor is None else f"{principal.role}:{body.actor}"
    try:
        row = drift.take_reference(body.version, body.start, body.end, reason=body.reason, actor=actor, now=now,
                                   devices=body.devices, device_baselines=body.device_baselines)
    except RegistryError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except DriftReferenceError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
    manifest = drift.references.manifest(row.version)
    return DriftReferencePublic.from_row(row, None if manifest is None else manifest.feature_names)


@router.get("/reference/{version}", summary="A version's current drift reference and its history",
            responses=error(404, "No manifest for this version"))
def get_reference(
    _: Reader, drift: DriftDep, version: Annotated[str, PathParam(min_length=1, max_length=128)]
) -> DriftReferenceStatus:
    manifest = drift.references.manifest(version)
    if manifest is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown model version {version!r}: no manifest")
    current, history = drift.reference(version)
    return DriftReferenceStatus(
        version=version, source="manifest" if current is None else "fleet",
        current=None if current is None else DriftReferencePublic.from_row(current, manifest.feature_names),
        history=[DriftReferencePublic.from_row(r) for r in history],
    )
