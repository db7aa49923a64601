"""One router per page group; `PAGES` is mounted under ``/console`` by `hub.console.app.mount_console`."""

from fastapi import APIRouter

from hub.console.pages import auth, fleet, incidents, models, rollouts

PAGES: tuple[APIRouter, ...] = (auth.router, incidents.router, fleet.router, rollouts.router, models.router)

__all__ = ["PAGES"]
