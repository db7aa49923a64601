"""Limits at the API's edge: request bodies are bounded and token-checked before they are read, and a 422 that
echoes invalid input always serialises.

`BodyLimitMiddleware` is plain ASGI, outside FastAPI's routing (which reads and parses the whole body before
any dependency runs, so a route's authentication comes too late to stop a 50 MB upload):

- a request that declares ``Content-Length`` above the limit gets 413 without a byte of its body read;
- a request with a body (any method but GET/HEAD/OPTIONS) without a known bearer token gets 401 before its
  body is read (the routes still check the token's role), unless `admit` lets it in another way (the console's
  forms: a signed session cookie, or the sign-in form itself);
- a streamed body (chunked, or lying about its length) is counted as it is received: past the limit the
  request ends with 413.

`validation_error_handler` replaces FastAPI's 422 handler, which answered 500 when the echoed input held a
lone surrogate (not UTF-8) or NaN (not JSON).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.deps import error, find_role
from hub.app.settings import Role

BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ECHO_CHARS = 200
"""How much of an invalid input a 422 echoes back."""


TOO_LARGE = error(413, "The request body is larger than the hub's api_max_body_bytes (refused before it is read)")
"""How every operation documents the middleware's 413: it answers before routing, whatever the route."""


def too_large(limit: int) -> str:
    return f"request body too large: at most {limit} bytes"


class BodyLimitMiddleware:
    """Refuses request bodies above `max_bytes` (413) and bodies without a known token (401), before reading them."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, tokens: Mapping[str, Role],
                 admit: Callable[[str, Mapping[str, str]], bool] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.tokens = dict(tokens)
        self.admit = admit  # (path, lower-cased headers) -> whether a body without a bearer token may be read

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        declared = headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _respond(send, 400, {"detail": "invalid Content-Length"})
                return
            if size > self.max_bytes:
                await _respond(send, 413, {"detail": too_large(self.max_bytes)}, close=True)
                return
        if scope["method"] not in BODYLESS_METHODS and self.tokens:
            problem = self._unauthenticated(headers.get("authorization"))
            if problem is not None and not (self.admit is not None and self.admit(scope["path"], headers)):
                await _respond(send, 401, {"detail": problem}, close=True,
                               extra=[(b"www-authenticate", b"Bearer")])
                return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, detail=too_large(self.max_bytes))
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except HTTPException as exc:  # raised from `counted` outside FastAPI's handlers
            if exc.status_code != 413 or started:
                raise
            await _respond(send, 413, {"detail": exc.detail}, close=True)

    def _unauthenticated(self, authorization: str | None) -> str | None:
        """Why the request has no known token, or None (the same rule as `hub.api.deps.authenticate`)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "missing bearer token: send Authorization: Bearer <token>"
        if find_role(self.tokens, token.strip()) is None:
            return "unknown bearer token"
        return None


async def _respond(
    send: Send, status: int, body: dict[str, Any], *, close: bool = False, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """A JSON response sent straight over ASGI (``Connection: close`` when the body is left unread)."""
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *extra]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def json_safe(value: Any) -> Any:
    """`value` made JSON- and UTF-8-safe: non-finite floats as strings, unpaired surrogates escaped, long strings cut.

    >>> json_safe({"input": [float("nan"), "a\\ud800b"]})
    {'input': ['nan', 'a\\\\ud800b']}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        text = value[:ECHO_CHARS] + ("…" if len(value) > ECHO_CHARS else "")
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, Mapping):
        return {str(json_safe(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 (``{"detail": [errors]}``), with the echoed input made safe to serialise."""
    assert isinstance(exc, RequestValidationError)
    try:
        errors = jsonable_encoder(exc.errors())
    except Exception:  # an input jsonable_encoder cannot take at all: leave the inputs out
        errors = [{k: v for k, v in e.items() if k not in ("input", "ctx")} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": json_safe(errors)})
