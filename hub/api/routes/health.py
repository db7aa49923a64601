"""``/health``: the store, the hub's MQTT connections and its periodic jobs, with degraded states named.

200 for ok and degraded (the API answers; a probe should not restart the hub because the broker is away),
503 for failed (the store cannot be read). The verdict is `hub.app.health.assess`.
"""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from hub.api.deps import NowDep, ServicesDep, error
from hub.api.schemas.health import HealthPublic
from hub.app.health import assess
from shared.errors import StoreError

router = APIRouter(tags=["health"])


@router.get("/health", summary="Store, broker connections and background jobs", response_model=HealthPublic,
            responses=error(503, "The store cannot be read (status failed)"))
def get_health(services: ServicesDep, now: NowDep) -> JSONResponse:
    counts: dict[str, int] | None = None
    store_error = None
    try:
        counts = asdict(services.store.counts())
    except StoreError as exc:
        store_error = str(exc)
    health = services.health
    report = assess(store_error=store_error, counts=counts, connections=health.connections(), jobs=health.jobs(),
                    now=now)
    body = HealthPublic(status=report.status, problems=report.problems, dev_mode=services.settings.dev_mode,
                        counts=counts or {}, store=report.store, broker=report.broker, jobs=report.jobs)
    return JSONResponse(body.model_dump(mode="json"), status_code=503 if report.status == "failed" else 200)
