"""Sign-in (an API token and your name exchanged for a session cookie), sign-out, and the console's home."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hub.api.deps import NowDep, find_role
from hub.console.deps import PREFIX, Console, ConsoleDep, Form, Viewer, render, see_other
from hub.console.session import COOKIE, NONCE_COOKIE

router = APIRouter()

def _safe_next(path: str | None) -> str:
    """Only a console path: never an open redirect to another site."""
    if path and path.startswith(PREFIX) and not path.startswith("//") and "\\" not in path:
        return path
    return f"{PREFIX}/incidents"


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path=PREFIX, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


@router.get("")
def home(_: Viewer) -> RedirectResponse:
    return see_other(f"{PREFIX}/incidents")


def _form(request: Request, console: Console, next_path: str, *, status: int = 200,
          error: str | None = None) -> HTMLResponse:
    """The sign-in form with a fresh nonce, and the nonce's signed cookie."""
    nonce, cookie = console.codec.sign_in_nonce()
    response = render(request, console, "sign_in.html", None, status=status, nonce=nonce, next_path=next_path,
                      error=error, open_access=not console.settings.tokens)
    _cookie(response, request, NONCE_COOKIE, cookie, 3600)
    return response


@router.get("/sign-in")
def sign_in_page(request: Request, console: ConsoleDep,
                 next_: Annotated[str | None, Query(alias="next", max_length=2000)] = None) -> HTMLResponse:
    return _form(request, console, _safe_next(next_))


@router.post("/sign-in")
async def sign_in(request: Request, console: ConsoleDep, now: NowDep) -> Response:
    """The token's role (as the API decides it) and the name given become the session; the token is not kept."""
    if console.codec.nonce(request.cookies.get(NONCE_COOKIE)) is None:  # not our form: read no body
        return _form(request, console, _safe_next(None), status=403, error="The sign-in form expired: try again.")
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    next_path = _safe_next(values.get("next"))
    if not console.codec.nonce_ok(request.cookies.get(NONCE_COOKIE), values.get("nonce")):
        return _form(request, console, next_path, status=403, error="The sign-in form expired: try again.")
    token = (values.get("token") or "").strip()
    who = (values.get("who") or "").strip()
    tokens = console.settings.tokens
    role = find_role(tokens, token) if tokens else "operator"
    if role is None:
        return _form(request, console, next_path, status=401,
                     error="Unknown token: use the API token your hub administrator gave you.")
    if not who or len(who) > 64 or not all(c.isalnum() or c in "_.@ -" for c in who):
        return _form(request, console, next_path, status=401,
                     error="Give your name or technician id (letters, digits, _ . @ - and spaces, up to 64).")
    session = console.codec.new(role, who, token if tokens else None, now)
    response: Response = see_other(next_path)
    _cookie(response, request, COOKIE, console.codec.dumps(session), console.codec.max_age_s)
    response.delete_cookie(NONCE_COOKIE, path=PREFIX)
    return response


@router.post("/sign-out")
def sign_out(_: Form) -> RedirectResponse:
    response = see_other(f"{PREFIX}/sign-in")
    response.delete_cookie(COOKIE, path=PREFIX)
    return response

