"""``/retrain``: ask for a retrain (operators), follow its job (everyone with a token).

A request is a manual trigger: it overrides the cooldown but not the minimum of validated labels, and is
recorded as a ``retrain_trigger`` event whether it is accepted or not. Training runs in the hub's training
worker, never inside the request: the answer is 202 with the job to poll.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from hub.api.deps import AUTH_RESPONSES, NowDep, Operator, Principal, Reader, error
from hub.api.schemas import Public
from hub.store.rows import TrainingJobRow
from hub.training.errors import RetrainBlockedError, TrainingBusyError, UnknownLabelSetError
from hub.training.triggers import TriggerOutcome

router = APIRouter(prefix="/retrain", tags=["retrain"], responses=AUTH_RESPONSES)
UNAVAILABLE = error(503, "This hub runs without training")


class TrainingControl(Protocol):
    """What the routes need of `hub.training.service.TrainingService` (not imported here: it brings
    scikit-learn, and the API loads without it)."""

    def request(self, *, actor: str, reason: str, now: float, label_set_id: str | None = None) -> TriggerOutcome: ...

    def job(self, job_id: str) -> TrainingJobRow | None: ...

    def jobs(self, limit: int = 50) -> list[TrainingJobRow]: ...


def get_training(request: Request) -> TrainingControl:
    """The training service `create_app` was given; 503 when the hub runs without one."""
    service: TrainingControl | None = getattr(request.app.state, "training", None)
    if service is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="training is not enabled on this hub")
    return service


TrainingDep = Annotated[TrainingControl, Depends(get_training)]


class RetrainCreate(BaseModel):
    """Why (required), who (optional, recorded as ``operator:<actor>``) and which label set (default: the
    current annotations, validated now)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)
    actor: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$",
                              description="who asks, as stated by the caller (tokens carry only a role)")
    label_set_id: str | None = Field(default=None, min_length=1, max_length=64)


class TriggerPublic(Public):
    fire: bool
    kind: str | None
    reason: str
    blocked_by: str | None
    detail: str


class RetrainAccepted(Public):
    """A queued job: poll ``GET /retrain/{job_id}``."""

    job_id: str
    trigger_id: str
    label_set_id: str
    total_labels: int
    new_labels: int
    decision: TriggerPublic


class TrainingJobPublic(Public):
    """A training job: its stage and progress while it runs, its version and gate verdict when done."""

    id: str
    status: str = Field(description="queued, running, succeeded or failed")
    stage: str
    progress: float = Field(ge=0, le=1)
    trigger: str
    trigger_id: str | None
    actor: str
    reason: str
    label_set_id: str | None
    result_version: str | None
    gate_verdict: str | None = Field(description="pass, fail or insufficient_data; the version is a "
                                     "candidate only on pass, otherwise rejected")
    error: str | None
    created_ts: float
    started_ts: float | None
    finished_ts: float | None
    details: dict[str, Any]

    @classmethod
    def from_row(cls, row: TrainingJobRow) -> TrainingJobPublic:
        return cls(
            id=row.id, status=row.status, stage=row.stage, progress=row.progress, trigger=row.trigger,
            trigger_id=row.trigger_id, actor=row.actor, reason=row.reason, label_set_id=row.label_set_id,
            result_version=row.result_version, gate_verdict=row.gate_verdict, error=row.error,
            created_ts=row.created_ts, started_ts=row.started_ts, finished_ts=row.finished_ts, details=row.details,
        )


def _actor(principal: Principal, stated: str | None) -> str:
    return principal.role if stated is None else f"{principal.role}:{stated}"


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Retrain now (manual trigger)",
    responses={
        **error(400, "A guard refuses it: too few validated labels (a manual request overrides only the cooldown)"),
        **error(404, "No label set with this id"),
        **error(409, "A training job is already queued or running"),
        **UNAVAILABLE,
    },
)
def request_retrain(body: RetrainCreate, principal: Operator, training: TrainingDep, now: NowDep) -> RetrainAccepted:
    """Queue a retrain on the hub's training worker. The request, accepted or refused, is recorded as a
    ``retrain_trigger`` event; the job then trains, converts, checks parity, registers and gates a candidate."""
    try:
        outcome = training.request(actor=_actor(principal, body.actor), reason=body.reason, now=now,
                                   label_set_id=body.label_set_id)
    except TrainingBusyError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except RetrainBlockedError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
    except UnknownLabelSetError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    assert outcome.job_id is not None  # it fired
    d = outcome.decision
    return RetrainAccepted(
        job_id=outcome.job_id, trigger_id=outcome.trigger_id, label_set_id=outcome.inputs.label_set_id,
        total_labels=outcome.inputs.total_labels, new_labels=outcome.inputs.new_labels,
        decision=TriggerPublic(fire=d.fire, kind=d.kind, reason=d.reason, blocked_by=d.blocked_by, detail=d.detail),
    )


@router.get("", summary="Recent training jobs (newest first)", responses=UNAVAILABLE)
def list_jobs(
    _: Reader, training: TrainingDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> list[TrainingJobPublic]:
    return [TrainingJobPublic.from_row(r) for r in training.jobs(limit)]


@router.get("/{job_id}", summary="One training job: stage, progress, outcome",
            responses={**error(404, "No training job with this id"), **UNAVAILABLE})
def get_job(
    job_id: Annotated[str, Path(min_length=1, max_length=64)], _: Reader, training: TrainingDep
) -> TrainingJobPublic:
    row = training.job(job_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no training job {job_id}")
    return TrainingJobPublic.from_row(row)
