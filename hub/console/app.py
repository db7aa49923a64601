"""`mount_console`: the console's pages, static files and error pages on the hub's FastAPI app.

Routes are left out of the OpenAPI document (`include_in_schema=False`): the API's schema describes the JSON API
only, and its fuzz tests need not post HTML forms.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from hub.app.settings import HubSettings
from hub.console import charts, words
from hub.console.deps import PREFIX, Console, ConsoleError, SignInRequired, render
from hub.console.pages import PAGES
from hub.console.session import COOKIE, SessionCodec, session_key

log = logging.getLogger(__name__)


def _sensor_plot(timestamps: Sequence[float], values: Sequence[float], window_start: float | None = None) -> Markup:
    return Markup(charts.sensor_plot(timestamps, values, window_start))  # safe: numbers and fixed strings only


def _templates() -> Jinja2Templates:
    env = Environment(loader=PackageLoader("hub.console", "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(iso=words.iso, age=words.age, sensor_plot=_sensor_plot)
    return Jinja2Templates(env=env)


def mount_console(app: FastAPI, settings: HubSettings) -> Console:
    """Add the console under ``/console`` to `app` (its pages use the services on ``app.state``); returns it (its
    `Console.admits_body` lets the API's body limit read console forms that carry no bearer token)."""
    codec = SessionCodec(session_key(settings), settings.tokens, settings.console.session_max_age_s)
    console = app.state.console = Console(codec=codec, templates=_templates(), settings=settings)
    app.mount(f"{PREFIX}/static", StaticFiles(packages=[("hub.console", "static")]), name="console-static")
    for router in PAGES:
        app.include_router(router, prefix=PREFIX, include_in_schema=False)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        response = RedirectResponse(f"{PREFIX}/sign-in?next={quote(exc.next_path, safe='')}", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    @app.exception_handler(ConsoleError)
    async def _refused(request: Request, exc: ConsoleError) -> HTMLResponse:
        console: Console = request.app.state.console
        return render(request, console, "error.html", None, status=exc.status, message=exc.message)

    return console
