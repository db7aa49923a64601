"""`HubClient`: the operator CLI's one way to the running hub, its HTTP API (never its broker or database).

Where the hub is: ``--hub URL``, else ``FLEETLOOP_HUB_URL``, else http://127.0.0.1:8000. The token: the
``FLEETLOOP_HUB_TOKEN`` variable, else the first line of ``--token-file`` / ``FLEETLOOP_HUB_TOKEN_FILE``; none at all
suits only a dev-mode hub without tokens. The hub's answers become the exceptions of `hub.errors`
(`HubRefusedError` for 4xx, `HubServerError` for 5xx, `HubUnreachableError`), which the CLI turns into one line
and an exit code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from hub.errors import HubRefusedError, HubServerError, HubUnreachableError
from shared.errors import ConfigError

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "FLEETLOOP_HUB_URL"
TOKEN_ENV = "FLEETLOOP_HUB_TOKEN"
TOKEN_FILE_ENV = "FLEETLOOP_HUB_TOKEN_FILE"


def resolve_token(token_file: Path | None, env: Mapping[str, str]) -> str | None:
    """The API token: ``FLEETLOOP_HUB_TOKEN``, else the first line of the token file; ConfigError if unreadable."""
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV].strip()
    path = token_file or (Path(env[TOKEN_FILE_ENV]) if env.get(TOKEN_FILE_ENV) else None)
    if path is None:
        return None
    try:
        lines = path.read_text().strip().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
    if not lines or not lines[0].strip():
        raise ConfigError(f"the token file {path} is empty: put the API token on its first line")
    return lines[0].strip()


class HubClient:
    """JSON over HTTP to one hub, with a bearer token; every method returns the decoded answer."""

    def __init__(self, url: str, token: str | None, *, timeout_s: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"the hub URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s, transport=transport)

    @classmethod
    def from_args(cls, url: str | None, token_file: Path | None, env: Mapping[str, str] | None = None) -> HubClient:
        """The client the flags and environment describe (see the module docstring)."""
        env = os.environ if env is None else env
        return cls(url or env.get(URL_ENV) or DEFAULT_URL, resolve_token(token_file, env))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        return self._call("POST", path, json=dict(body))

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise HubUnreachableError(
                f"cannot reach the hub at {self.url} ({type(exc).__name__}: {exc or 'no answer'}); is `fleetloop hub "
                f"serve` running there? Point --hub or {URL_ENV} at it") from None
        if response.status_code >= 500:
            raise HubServerError(f"the hub failed on {method} {path} ({response.status_code}): {_detail(response)}")
        if response.status_code >= 400:
            hint = ""
            if response.status_code == 401:
                hint = f" (set {TOKEN_ENV}, or --token-file / {TOKEN_FILE_ENV}, to a token of the hub's)"
            raise HubRefusedError(f"the hub refused {method} {path} ({response.status_code}): "
                                  f"{_detail(response)}{hint}", status=response.status_code)
        try:
            return response.json()
        except ValueError:
            raise HubServerError(f"the hub's answer to {method} {path} is not JSON") from None


def _detail(response: httpx.Response) -> str:
    """The hub's ``detail`` on one line (a 422's field errors joined), else the start of the body."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):  # FastAPI validation errors
        detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}"
                           if isinstance(d, dict) else str(d) for d in detail)
    text = str(detail) if detail else (response.text[:200] or response.reason_phrase)
    return " ".join(text.split())
