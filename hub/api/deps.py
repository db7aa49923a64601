"""Dependencies of the hub API: one typed `Services` (what `create_app` was given), aliases for its parts, and
bearer-token roles.

A route asks for what it uses (`StoreDep`, `RegistryDep`, …, or `ServicesDep` for the whole graph); a part
the hub runs without (registry, rollouts, training) answers 503 through its alias. Roles: ``viewer`` reads;
``technician`` also annotates, works the labeling queue, acknowledges and resolves incidents; ``operator`` does
everything (labels, rollouts, retraining). A route states who may call it with one of the aliases below, or with
``Depends(require("operator"))`` for a custom set.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hub.api.schemas.base import ErrorPublic
from hub.app.metrics import HubMetrics
from hub.app.settings import ROLES, HubSettings, Role
from hub.app.wiring import Services
from hub.incidents.service import IncidentService
from hub.labels.service import LabelSettings
from hub.registry.service import Registry
from hub.rollout.service import RolloutService
from hub.store.ports import HubStore
from hub.store.rows import TrainingJobRow
from hub.training.settings import RegimeSource
from hub.training.triggers import TriggerOutcome

if TYPE_CHECKING:
    from hub.training.service.intake import Registered


class TrainingControl(Protocol):
    """What the routes need of `hub.training.service.TrainingService` (not imported here: it brings
    scikit-learn, and the API loads without it)."""

    def request(self, *, actor: str, reason: str, now: float, label_set_id: str | None = None,
                regimes: RegimeSource | None = None) -> TriggerOutcome: ...

    def job(self, job_id: str) -> TrainingJobRow | None: ...

    def jobs(self, limit: int = 50) -> list[TrainingJobRow]: ...

    def register_model(self, path: Path, *, actor: str, reason: str, skip_gate: bool = False,
                       now: float | None = None) -> Registered: ...


def get_services(request: Request) -> Services:
    """The `Services` `create_app` put on the app (the one place that reads ``app.state``)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> HubSettings:
    return services.settings


def get_store(services: ServicesDep) -> HubStore:
    return services.store


def get_metrics(services: ServicesDep) -> HubMetrics:
    return services.metrics


def get_labels(services: ServicesDep) -> LabelSettings:
    return services.labels


def get_now(services: ServicesDep) -> float:
    return services.clock()


def _unavailable(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=detail)


def get_registry(services: ServicesDep) -> Registry:
    """The model registry; 503 when the hub runs without one."""
    if services.registry is None:
        raise _unavailable("this hub runs without a model registry")
    return services.registry


def get_rollouts(services: ServicesDep) -> RolloutService:
    """The rollout service; 503 when the hub runs without one."""
    if services.rollouts is None:
        raise _unavailable("this hub runs without rollouts")
    return services.rollouts


def get_training(services: ServicesDep) -> TrainingControl:
    """The training service; 503 when the hub runs without one."""
    if services.training is None:
        raise _unavailable("training is not enabled on this hub")
    return services.training


def get_incidents(services: ServicesDep) -> IncidentService:
    """The incident service; 503 when the hub runs without one."""
    if services.incidents is None:
        raise _unavailable("this hub runs without incidents")
    return services.incidents


SettingsDep = Annotated[HubSettings, Depends(get_settings)]
StoreDep = Annotated[HubStore, Depends(get_store)]
MetricsDep = Annotated[HubMetrics, Depends(get_metrics)]
LabelSettingsDep = Annotated[LabelSettings, Depends(get_labels)]
NowDep = Annotated[float, Depends(get_now)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
RolloutsDep = Annotated[RolloutService, Depends(get_rollouts)]
TrainingDep = Annotated[TrainingControl, Depends(get_training)]
IncidentsDep = Annotated[IncidentService, Depends(get_incidents)]


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
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller's role from ``Authorization: Bearer <token>``; 401 without a known token.

    Without tokens (dev mode only: `create_app` refuses it otherwise) every caller is an operator."""
    if not settings.tokens:
        return Principal("operator", open_access=True)
    if credentials is None:
        raise _unauthorized("missing bearer token: send Authorization: Bearer <token>")
    role = find_role(settings.tokens, credentials.credentials)
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
