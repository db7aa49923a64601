"""Dependencies of the console's pages: who is signed in (or a redirect to sign in), roles, CSRF-checked forms,
and the one template renderer.

A page states who may see it with `Viewer`, `Technician` or `Operator` (the API's roles); a form handler takes
`Form` (the parsed form, its CSRF token already checked against the session). Errors here are `ConsoleError`s,
turned into a redirect or an HTML page by the handlers `hub.console.app` installs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from hub.app.settings import ROLES, HubSettings, Role
from hub.console.session import COOKIE, Session, SessionCodec, csrf_ok

PREFIX = "/console"


class ConsoleError(Exception):
    """A page refused: `status` and a sentence for the person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SignInRequired(ConsoleError):
    """No valid session: the page redirects to sign-in, then back to `next_path`."""

    def __init__(self, next_path: str) -> None:
        super().__init__(303, "sign in first")
        self.next_path = next_path


@dataclass(frozen=True)
class Console:
    """What `mount_console` builds once per app: the cookie codec, templates and whether cookies are Secure."""

    codec: SessionCodec
    templates: Jinja2Templates
    settings: HubSettings

    def admits_body(self, path: str, headers: Mapping[str, str]) -> bool:
        """Console forms carry no bearer token: their bodies are admitted (within the API's size limit), and every
        route reads one only after the session (or, for sign-in, the form's nonce cookie) is checked; a form posted
        after the session expired is sent to sign in rather than refused with a JSON 401."""
        return path == PREFIX or path.startswith(f"{PREFIX}/")


def get_console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


ConsoleDep = Annotated[Console, Depends(get_console)]


def current_session(request: Request, console: ConsoleDep) -> Session:
    """The signed-in session from the cookie; `SignInRequired` without a valid one."""
    value = request.cookies.get(COOKIE)
    session = None if value is None else console.codec.loads(value)
    if session is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(path if request.method == "GET" else PREFIX)
    return session


def need(*roles: Role) -> Callable[[Session], Session]:
    """A dependency letting only sessions of `roles` through (403 page naming the roles otherwise)."""
    allowed = frozenset(roles)
    wording = " or ".join(r for r in ROLES if r in allowed)

    def check(session: Annotated[Session, Depends(current_session)]) -> Session:
        if session.role not in allowed:
            raise ConsoleError(403, f"This needs the role {wording}; you are signed in as a {session.role}.")
        return session

    return check


Viewer = Annotated[Session, Depends(need("viewer", "technician", "operator"))]
Technician = Annotated[Session, Depends(need("technician", "operator"))]
Operator = Annotated[Session, Depends(need("operator"))]


async def checked_form(request: Request, session: Annotated[Session, Depends(current_session)]) -> FormData:
    """The posted form, once its ``csrf`` field matches the session's token (403 otherwise)."""
    form = await request.form()
    token = form.get("csrf")
    if not csrf_ok(session, token if isinstance(token, str) else None):
        raise ConsoleError(403, "This form has no valid CSRF token: reload the page and try again.")
    return form


Form = Annotated[FormData, Depends(checked_form)]


def field(form: FormData, name: str, *, default: str | None = None, max_len: int = 2000) -> str | None:
    """A text field of `form`, stripped; None (or `default`) when absent or empty; 400 when too long."""
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        return default
    if len(value) > max_len:
        raise ConsoleError(400, f"{name} is longer than {max_len} characters")
    return value.strip()


def render(request: Request, console: Console, template: str, session: Session | None, status: int = 200,
           **context: Any) -> HTMLResponse:
    """`template` with the session (for the menu and the forms' CSRF token) and `context`."""
    base: Mapping[str, Any] = {"session": session, "prefix": PREFIX, "poll_ms": int(console.settings.console.poll_s
                                                                                     * 1000)}
    return console.templates.TemplateResponse(request, template, {**base, **context}, status_code=status)


def see_other(path: str) -> RedirectResponse:
    """The redirect after a form (POST → 303 → GET), so a reload never posts twice."""
    return RedirectResponse(path, status_code=303)
