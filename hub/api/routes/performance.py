"""``/performance``: how each model version does on the labels that came back, against its gate-time figures, and
what its scores say before the labels arrive (label-free estimates, with their error once labels are in)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from hub.api.deps import AUTH_RESPONSES, NowDep, Reader, ServicesDep, StoreDep
from hub.training.performance import PERFORMANCE_EVENT
from hub.training.service.performance import performance_now

router = APIRouter(prefix="/performance", tags=["performance"], responses=AUTH_RESPONSES)


@router.get("", summary="Realized and estimated performance per model version and cohort")
def realized_performance(
    _: Reader,
    store: StoreDep,
    services: ServicesDep,
    now: NowDep,
    version: Annotated[str | None, Query(max_length=100, description="one version; all if omitted")] = None,
) -> dict[str, Any]:
    """Recall on confirmed failures, missed failures and the false-alarm rate of every version on the labels of the
    latest validated label set, each with its sequential test against the version's gate-time figures
    (`hub.training.performance`), and the ``performance_degraded`` events recorded so far; beside them the label-free
    ``estimates`` of recall, precision, false-alarm rate and F1 from the random samples each version scored and its
    calibration, with the estimate's ``error`` against the realized figures where there are any
    (`hub.training.estimate`)."""
    label_set_id, figures, estimated = performance_now(store, services.settings.training.performance, now=now)
    events = store.events(kind=PERFORMANCE_EVENT, limit=1000)
    return {
        "label_set_id": label_set_id, "ts": now,
        "figures": [f.to_dict() for f in figures if version is None or f.version == version],
        "estimates": [e.to_dict() for e in estimated if version is None or e.version == version],
        "events": [{"id": e.id, "ts": e.ts, **e.payload} for e in events
                   if version is None or e.payload.get("model_version") == version],
    }
