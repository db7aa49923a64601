"""`create_app`: the hub API for one `HubSettings` and one `HubStore`, both passed in (nothing global).

The caller owns the store (and closes it); the app only reads ``app.state.api``. Errors of the store become
503 here, the one edge where they are translated to HTTP.
"""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hub.api.deps import ApiState, Clock
from hub.api.routes import ROUTERS, models
from hub.api.routes import retrain as retrain_routes
from hub.api.routes import rollouts as rollouts_routes
from hub.app.metrics import HubMetrics
from hub.app.settings import HubSettings
from hub.labels.service import LabelSettings
from hub.registry.service import Registry
from hub.rollout.service import RolloutService
from hub.store.ports import HubStore
from shared.errors import ConfigError, StoreError

log = logging.getLogger(__name__)

DESCRIPTION = """\
The fleetloop hub: technicians annotate predictions, operators turn annotations into versioned label sets,
everyone reads devices, traces and drift.

Send `Authorization: Bearer <token>`; a token's role (viewer, technician, operator) decides what it may do.
`/metrics` and `/health` need no token.
"""


def create_app(
    settings: HubSettings,
    store: HubStore,
    *,
    metrics: HubMetrics | None = None,
    labels: LabelSettings | None = None,
    clock: Clock = time.time,
    registry: Registry | None = None,
    rollouts: RolloutService | None = None,
    training: retrain_routes.TrainingControl | None = None,
) -> FastAPI:
    """The API app. `metrics` defaults to a fresh registry, `labels` to `LabelSettings()`, `clock` to the wall clock.

    `registry` serves ``/models``, `rollouts` ``/rollouts`` and `training` (a `hub.training.service.TrainingService`)
    ``/retrain``; without them those routes answer 503.

    Outside dev mode it refuses to run without tokens (as `HubSettings` does); in dev mode without tokens
    every request is an operator, and a warning says so.
    """
    open_access = not settings.tokens
    if open_access and not settings.dev_mode:
        raise ConfigError("the hub API needs API tokens outside dev mode: set FLEETLOOP_HUB_TOKENS or tokens_file")
    if open_access:
        log.warning(
            "!!! hub API in dev mode WITHOUT API TOKENS: every request is treated as an operator. "
            "Never expose this to a network; set FLEETLOOP_HUB_TOKENS to require tokens. !!!"
        )
    app = FastAPI(title="fleetloop hub", version="1", description=DESCRIPTION)
    app.state.api = ApiState(
        settings=settings,
        store=store,
        metrics=metrics if metrics is not None else HubMetrics(),
        labels=labels if labels is not None else LabelSettings(),
        clock=clock,
        open_access=open_access,
    )
    app.state.registry = registry
    app.state.rollouts = rollouts
    app.state.training = training
    for router in (*ROUTERS, models.router, rollouts_routes.router, retrain_routes.router):
        app.include_router(router)

    @app.exception_handler(StoreError)
    async def _store_error(request: Request, exc: StoreError) -> JSONResponse:
        log.error("store error on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(status_code=503, content={"detail": f"the hub store is unavailable: {exc}"})

    return app
