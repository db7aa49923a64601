"""Bodies of ``/rollouts``: a rollout to start (`RolloutCreate`), an operator's action, and rollouts."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.api.schemas.base import ActionBody, DeviceId, Public
from hub.api.schemas.models import VERSION_PATTERN
from hub.rollout import HealthLimits, StageName
from hub.rollout.service import Rollout
from hub.rollout.settings import Factor, Floor, LatencyMs, Psi, Share, Windows, override_limits


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
    min_traffic_samples: Windows | None = None
    estimate_max_drop: Share | None = None

    def over(self, defaults: HealthLimits) -> HealthLimits:
        """`defaults` with these limits replaced; RolloutError when the result is inconsistent."""
        return override_limits(defaults, self.model_dump(exclude_none=True))


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
