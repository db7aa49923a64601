"""Dependencies of the hub API: typed aliases for what `create_app` put on ``app.state``, and bearer-token roles.

Roles: ``viewer`` reads; ``technician`` also annotates and works the labeling queue; ``operator`` does
everything (labels, and the rollouts and retraining to come). A route states who may call it with one of
the aliases below, or with ``Depends(require("operator"))`` for a custom set.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hub.api.schemas import ErrorPublic
from hub.app.metrics import HubMetrics
from hub.app.settings import ROLES, HubSettings, Role
from hub.labels.service import LabelSettings
from hub.store.ports import HubStore

Clock = Callable[[], float]


@dataclass(frozen=True)
class ApiState:
    """Everything a request may need, built once by `create_app` (no module globals)."""

    settings: HubSettings
    store: HubStore
    metrics: HubMetrics
    labels: LabelSettings
    clock: Clock
    open_access: bool  # dev mode without tokens: every request is an operator


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


StateDep = Annotated[ApiState, Depends(get_state)]


def get_store(state: StateDep) -> HubStore:
    return state.store


def get_metrics(state: StateDep) -> HubMetrics:
    return state.metrics


def get_labels(state: StateDep) -> LabelSettings:
    return state.labels


def get_now(state: StateDep) -> float:
    return state.clock()


StoreDep = Annotated[HubStore, Depends(get_store)]
MetricsDep = Annotated[HubMetrics, Depends(get_metrics)]
LabelSettingsDep = Annotated[LabelSettings, Depends(get_labels)]
NowDep = Annotated[float, Depends(get_now)]


# --- authentication and roles ---------------------------------------------------------------------

_bearer = HTTPBearer(
    auto_error=False, description="An API token from the hub's `tokens` setting; its role decides what it may do."
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the role of their token (or ``operator`` with open access in dev mode)."""

    role: Role
    open_access: bool = False


def find_role(tokens: Mapping[str, Role], presented: str) -> Role | None:
    """The role of `presented`, comparing it with every token in constant time (no early exit)."""
    wanted = presented.encode()
    found: Role | None = None
    for token, role in tokens.items():
        if secrets.compare_digest(token.encode(), wanted):
            found = role
    return found


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": challenge})


def authenticate(
    state: StateDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller's role from ``Authorization: Bearer <token>``; 401 without a known token."""
    if state.open_access:
        return Principal("operator", open_access=True)
    if credentials is None:
        raise _unauthorized("missing bearer token: send Authorization: Bearer <token>")
    role = find_role(state.settings.tokens, credentials.credentials)
    if role is None:
        raise _unauthorized("unknown bearer token", error="invalid_token")
    return Principal(role)


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def require(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency that lets only tokens of `roles` through (403 naming the roles otherwise)."""
    unknown = [r for r in roles if r not in ROLES]
    if not roles or unknown:
        raise ValueError(f"require() needs roles among {', '.join(ROLES)}, got {', '.join(roles) or 'none'}")
    allowed = frozenset(roles)
    wording = " or ".join(r for r in ROLES if r in allowed)

    def check(principal: PrincipalDep) -> Principal:
        if principal.role not in allowed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"this endpoint needs the role {wording}; your token has the role {principal.role}",
            )
        return principal

    return check


Reader = Annotated[Principal, Depends(require("viewer", "technician", "operator"))]
Technician = Annotated[Principal, Depends(require("technician", "operator"))]
Operator = Annotated[Principal, Depends(require("operator"))]

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorPublic, "description": "No bearer token, or an unknown one (`WWW-Authenticate: Bearer`)"},
    403: {"model": ErrorPublic, "description": "The token's role may not call this endpoint"},
}


def error(status_code: int, description: str) -> dict[int | str, dict[str, Any]]:
    """An OpenAPI ``responses`` entry for an error with a ``detail`` string."""
    return {status_code: {"model": ErrorPublic, "description": description}}
