"""``/rollouts``: start a staged rollout of a candidate (shadow → canary → fleet), watch it, steer it.

Operators start, pause, resume, promote, roll back and abort; everyone with a token reads. Every change is
recorded with who (``operator`` or ``operator:<actor>`` when the body names one), when and why, in the
rollout's history, the registry's audit trail and the hub's events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.api.deps import AUTH_RESPONSES, Operator, Principal, Reader, error
from hub.api.routes.models import VERSION_PATTERN
from hub.api.schemas import Public
from hub.registry.service import RegistryError
from hub.rollout import HealthLimits, RolloutError, StageName, StagePolicy
from hub.rollout.service import Rollout, RolloutNotFound, RolloutService
from hub.rollout.settings import Factor, Floor, LatencyMs, Psi, Share, Windows, override_limits
from shared.errors import ModelError
from shared.messages import DeviceId

router = APIRouter(prefix="/rollouts", tags=["rollouts"], responses=AUTH_RESPONSES)

RolloutId = Annotated[str, Path(min_length=1, max_length=64)]
Action = Literal["pause", "resume", "promote", "rollback", "abort"]
UNAVAILABLE = error(503, "This hub runs without rollouts (no registry or broker publisher)")
UNPARSABLE = error(400, "The body is not JSON")
T = TypeVar("T")


def get_rollouts(request: Request) -> RolloutService:
    """The rollout service `create_app` was given; 503 when the hub runs without one."""
    service: RolloutService | None = getattr(request.app.state, "rollouts", None)
    if service is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="this hub runs without rollouts")
    return service


RolloutsDep = Annotated[RolloutService, Depends(get_rollouts)]


# --- bodies ---------------------------------------------------------------------------------------------------
class PolicyCreate(BaseModel):
    """How long a stage is watched and how much evidence it needs (see `hub.rollout.StagePolicy`)."""

    model_config = ConfigDict(extra="forbid")

    min_duration_s: float = Field(ge=0, le=30 * 86400)
    min_windows: int = Field(ge=0, le=10**9)
    timeout_s: float = Field(gt=0, le=30 * 86400)
    min_reporting: float = Field(default=1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _order(self) -> PolicyCreate:
        if self.min_duration_s >= self.timeout_s:
            raise ValueError("min_duration_s must be below timeout_s")
        return self


class LimitsCreate(BaseModel):
    """Health limits to change for this rollout (see `hub.rollout.HealthLimits`); the rest come from the hub's
    settings (``rollout_limits``)."""

    model_config = ConfigDict(extra="forbid")

    latency_p99_ms: LatencyMs | None = None
    max_error_rate: Share | None = None
    max_score_psi: Psi | None = None
    anomaly_rate_factor: Factor | None = None
    rollback_anomaly_factor: Factor | None = None
    anomaly_rate_floor: Floor | None = None
    max_disagreement: Share | None = None
    min_rate_windows: Windows | None = None

    def over(self, defaults: HealthLimits) -> HealthLimits:
        """`defaults` with these limits replaced; RolloutError when the result is inconsistent."""
        return override_limits(defaults, self.model_dump(exclude_none=True))


class ActionBody(BaseModel):
    """Why (required) and, optionally, who: recorded as ``operator:<actor>``."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)
    actor: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$",
                              description="who acts, as stated by the caller (tokens carry only a role)")


class RolloutCreate(ActionBody):
    """Roll `candidate` out over the active version: optional shadow stage, canary, then the fleet."""

    candidate: str = Field(min_length=1, max_length=128, pattern=VERSION_PATTERN)
    canary: Annotated[float, Field(gt=0, lt=1)] | list[DeviceId] = Field(
        default=0.1, description="a fraction of the fleet (covering cohorts) or explicit device ids")
    shadow: bool | Annotated[float, Field(gt=0, le=1)] | list[DeviceId] = Field(
        default=False, description="false, true (shadow on the canary devices first), a fraction or device ids")
    seed: int | None = Field(default=None, ge=0, le=2**31, description="device pick; default: from the candidate")
    policies: dict[StageName, PolicyCreate] | None = Field(default=None, description="per-stage overrides")
    limits: LimitsCreate | None = Field(default=None, description="health-limit overrides for this rollout; "
                                        "the limits used are stored with the plan")


# --- responses ------------------------------------------------------------------------------------------------
class StagePublic(Public):
    name: StageName
    mode: Literal["active", "shadow"]
    devices: list[str]
    policy: dict[str, float]


class TransitionPublic(Public):
    at: float
    actor: str
    action: str
    from_stage: str
    to_stage: str
    status: str
    reason: str


class RolloutPublic(Public):
    id: str
    candidate: str
    incumbent: str
    status: str = Field(description="running, completed, rolled_back or aborted")
    stage: StageName
    paused: bool
    created_ts: float
    updated_ts: float
    actor: str = Field(description="who started it")
    reason: str = Field(description="why it was started")
    stages: list[StagePublic]
    limits: dict[str, float] = Field(description="the health limits the rollout is judged by")
    decision: dict[str, Any] | None = Field(description="the last decision: kind, reason, commands, numbers and "
                                            "the yardstick (control, or the candidate's own expectation) and why")

    @classmethod
    def from_rollout(cls, r: Rollout) -> RolloutPublic:
        return cls(**_summary(r))


class RolloutDetail(RolloutPublic):
    """A rollout with its plan, the machine's state, and the history of who did what, when and why."""

    plan: dict[str, Any]
    state: dict[str, Any]
    history: list[TransitionPublic]

    @classmethod
    def from_rollout(cls, r: Rollout) -> RolloutDetail:
        return cls(**_summary(r), plan=r.row.plan, state=r.row.state,
                   history=[TransitionPublic(**t.to_dict()) for t in r.state.history])


def _summary(r: Rollout) -> dict[str, Any]:
    return {
        "id": r.id, "candidate": r.plan.candidate, "incumbent": r.plan.incumbent, "status": r.state.status,
        "stage": r.state.stage, "paused": r.state.paused, "created_ts": r.row.created_ts,
        "updated_ts": r.state.updated_at, "actor": r.row.actor, "reason": r.row.reason,
        "stages": [StagePublic(name=s.name, mode=s.mode, devices=list(s.devices), policy=s.policy.to_dict())
                   for s in r.plan.stages],
        "limits": r.plan.limits.to_dict(),
        "decision": None if r.decision is None else r.decision.to_dict(),
    }


def _actor(principal: Principal, body: ActionBody) -> str:
    return principal.role + (f":{body.actor}" if body.actor else "")


def _translate(call: Callable[[], T]) -> T:
    """The one place rollout errors become HTTP: unknown → 404, anything the state refuses → 409."""
    try:
        return call()
    except RolloutNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except RegistryError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except (RolloutError, ModelError) as exc:  # ModelError: the registry's artifact no longer matches its sha256
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None


# --- routes ---------------------------------------------------------------------------------------------------
@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Start a rollout of a candidate",
    responses={**UNPARSABLE, **error(404, "No such model version"),
               **error(409, "Another rollout is running, or the version is not a candidate"), **UNAVAILABLE},
)
def start_rollout(body: RolloutCreate, principal: Operator, rollouts: RolloutsDep) -> RolloutDetail:
    """Plans the stages over the devices the hub knows (canary devices cover as many cohorts as they can),
    assigns the first stage (retained `Assign` per device) and moves the candidate to ``shadow``/``canary``.
    `limits` overrides some of the hub's health limits for this rollout; limits that contradict each other once
    merged with the hub's (``anomaly_rate_factor`` above ``rollback_anomaly_factor``) are refused with 422."""
    policies = None if body.policies is None else {
        name: StagePolicy(p.min_duration_s, p.min_windows, p.timeout_s, p.min_reporting)
        for name, p in body.policies.items()
    }
    limits = None
    if body.limits is not None:
        try:
            limits = body.limits.over(rollouts.limits)
        except RolloutError as exc:  # the same 422 shape as any other invalid body
            raise RequestValidationError([{"type": "value_error", "loc": ("body", "limits"), "msg": str(exc),
                                           "input": body.limits.model_dump(exclude_none=True)}]) from None
    rollout = _translate(lambda: rollouts.start(
        body.candidate, actor=_actor(principal, body), reason=body.reason, canary=body.canary,
        shadow=body.shadow, seed=body.seed, policies=policies, limits=limits,
    ))
    return RolloutDetail.from_rollout(rollout)


@router.get("", summary="Rollouts (newest first)", responses=UNAVAILABLE)
def list_rollouts(
    _: Reader,
    rollouts: RolloutsDep,
    status_: Annotated[Literal["running", "completed", "rolled_back", "aborted"] | None,
                       Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RolloutPublic]:
    return [RolloutPublic.from_rollout(r) for r in rollouts.recent(status=status_, limit=limit)]


@router.get("/{rollout_id}", summary="One rollout: plan, state, history",
            responses={**error(404, "No such rollout"), **UNAVAILABLE})
def get_rollout(rollout_id: RolloutId, _: Reader, rollouts: RolloutsDep) -> RolloutDetail:
    return RolloutDetail.from_rollout(_translate(lambda: rollouts.get(rollout_id)))


@router.post(
    "/{rollout_id}/{action}",
    summary="Pause, resume, promote, roll back or abort a rollout",
    responses={**UNPARSABLE, **error(404, "No such rollout"),
               **error(409, "The rollout's state does not allow it (finished, not paused…)"), **UNAVAILABLE},
)
def act_on_rollout(
    rollout_id: RolloutId, action: Action, body: ActionBody, principal: Operator, rollouts: RolloutsDep
) -> RolloutDetail:
    """``pause`` stops the stage clock (failures still roll back); ``resume`` restarts it; ``promote`` skips the
    rest of the stage; ``rollback`` returns every device holding the candidate to the incumbent; ``abort``
    does the same for a reason other than the candidate's health."""
    act = getattr(rollouts, action)
    rollout = _translate(lambda: act(rollout_id, actor=_actor(principal, body), reason=body.reason))
    return RolloutDetail.from_rollout(rollout)
