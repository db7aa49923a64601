"""``/drift``: the stored drift reports."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hub.api.deps import AUTH_RESPONSES, Reader, StoreDep
from hub.api.schemas.drift import DriftReportPublic

router = APIRouter(prefix="/drift", tags=["drift"], responses=AUTH_RESPONSES)


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
