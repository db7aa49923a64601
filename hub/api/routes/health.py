"""``/health``: liveness for probes and load balancers, with the store's row counts."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from hub.api.deps import ServicesDep, error
from hub.api.schemas.health import HealthPublic

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness and row counts", responses=error(503, "The store cannot be read"))
def get_health(services: ServicesDep) -> HealthPublic:
    counts = services.store.counts()  # a StoreError becomes 503 (see hub.api.app)
    return HealthPublic(status="ok", dev_mode=services.settings.dev_mode, counts=asdict(counts))
