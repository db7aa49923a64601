"""One router per page group; `PAGES` is mounted under ``/console`` by `hub.console.app.mount_console`."""

from fastapi import APIRouter

from hub.console.pages import auth, fleet, incidents, rollouts

PAGES: tuple[APIRouter, ...] = (auth.router, incidents.router, fleet.router, rollouts.router)

__all__ = ["PAGES"]
