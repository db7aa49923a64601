"""One router per page group; `PAGES` is mounted under ``/console`` by `hub.console.app.mount_console`."""

from fastapi import APIRouter

from hub.console.pages import auth, device, drift, fleet, incidents, models, queue, rollouts, traces

PAGES: tuple[APIRouter, ...] = (auth.router, incidents.router, queue.router, fleet.router, device.router,
                                 rollouts.router, models.router, drift.router, traces.router)

__all__ = ["PAGES"]
