"""One router per resource; `ROUTERS` is the order they appear in the OpenAPI document."""

from fastapi import APIRouter

from hub.api.routes import (
    annotations,
    deadletters,
    devices,
    drift,
    health,
    incidents,
    labels,
    metrics,
    models,
    performance,
    queue,
    regimes,
    retrain,
    rollouts,
    traces,
)

ROUTERS: tuple[APIRouter, ...] = (
    annotations.router,
    queue.router,
    incidents.router,
    traces.router,
    labels.router,
    devices.router,
    drift.router,
    performance.router,
    metrics.router,
    health.router,
    models.router,
    rollouts.router,
    retrain.router,
    regimes.router,
    deadletters.router,
)

__all__ = ["ROUTERS"]
