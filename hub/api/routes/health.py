"""``/health``: liveness for probes and load balancers, with the store's row counts."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from hub.api.deps import StateDep, error
from hub.api.schemas import HealthPublic

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness and row counts", responses=error(503, "The store cannot be read"))
def get_health(state: StateDep) -> HealthPublic:
    counts = state.store.counts()  # a StoreError becomes 503 (see hub.api.app)
    return HealthPublic(status="ok", dev_mode=state.settings.dev_mode, counts=asdict(counts))
