"""`create_app`: the hub API over one `hub.app.wiring.Services` (settings, store, registry, …), passed in.

Nothing global: the caller owns the services (and closes the store); routes reach them only through the
typed dependencies of `hub.api.deps`. Errors of the store become 503 here, the one edge where they are
translated to HTTP.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from hub.api.limits import TOO_LARGE, BodyLimitMiddleware, validation_error_handler
from hub.api.routes import ROUTERS
from hub.app.metrics import HubMetrics
from hub.app.settings import HubSettings
from hub.app.wiring import Clock, Services
from hub.labels.service import LabelSettings
from hub.registry.service import Registry
from hub.rollout.service import RolloutService
from hub.store.ports import HubStore
from shared.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from hub.training.service import TrainingService  # scikit-learn: not imported by the API

log = logging.getLogger(__name__)

DESCRIPTION = """\
The fleetloop hub: technicians annotate predictions, operators turn annotations into versioned label sets,
everyone reads devices, traces and drift.

Send `Authorization: Bearer <token>`; a token's role (viewer, technician, operator) decides what it may do.
`/metrics` and `/health` need no token.
"""
DOCS_ASSETS_URL = "/docs-assets"  # Swagger UI and ReDoc scripts, served by the hub itself


def create_app(
    services: Services | HubSettings,
    store: HubStore | None = None,
    *,
    metrics: HubMetrics | None = None,
    labels: LabelSettings | None = None,
    clock: Clock | None = None,
    registry: Registry | None = None,
    rollouts: RolloutService | None = None,
    training: TrainingService | None = None,
) -> FastAPI:
    """The API app over `services` (from `hub.app.wiring.build_services`); routes of a part it lacks
    (registry: ``/models``, rollouts: ``/rollouts``, training: ``/retrain``) answer 503.

    For tests, ``create_app(settings, store, registry=…, clock=…)`` wraps the parts given in a `Services`
    (`metrics` defaults to a fresh registry, `labels` to the settings', `clock` to the wall clock).

    Outside dev mode it refuses to run without tokens (as `HubSettings` does); in dev mode without tokens
    every request is an operator, and a warning says so.
    """
    if isinstance(services, HubSettings):
        if store is None:
            raise TypeError("create_app(settings, store): the store is missing")
        settings = services if labels is None else services.model_copy(update={"labels": labels})
        services = Services(settings=settings, store=store, metrics=metrics if metrics is not None else HubMetrics(),
                            clock=clock if clock is not None else time.time, registry=registry, rollouts=rollouts,
                            training=training)
    elif store is not None or any(p is not None for p in (metrics, labels, clock, registry, rollouts, training)):
        raise TypeError("create_app(services) takes no other parts: they are in the Services")
    settings = services.settings
    if not settings.tokens and not settings.dev_mode:
        raise ConfigError("the hub API needs API tokens outside dev mode: set FLEETLOOP_HUB_TOKENS or tokens_file")
    if not settings.tokens:
        log.warning(
            "!!! hub API in dev mode WITHOUT API TOKENS: every request is treated as an operator. "
            "Never expose this to a network; set FLEETLOOP_HUB_TOKENS to require tokens. !!!"
        )
    # Swagger UI and ReDoc from the fastapi-offline package, not a CDN: the docs work on an air-gapped plant network
    app = FastAPIOffline(title="fleetloop hub", version="1", description=DESCRIPTION, static_url=DOCS_ASSETS_URL)
    app.state.services = services
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    for router in ROUTERS:
        app.include_router(router, responses=TOO_LARGE)
    from hub.console.app import mount_console  # here: the console's pages import hub.api.deps (a cycle at import)

    console = mount_console(app, settings)  # the web console at /console, over the same services
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes, tokens=settings.tokens,
                       admit=console.admits_body)

    @app.exception_handler(StoreError)
    async def _store_error(request: Request, exc: StoreError) -> JSONResponse:
        log.error("store error on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(status_code=503, content={"detail": f"the hub store is unavailable: {exc}"})

    return app
