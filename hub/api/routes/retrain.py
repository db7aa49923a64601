"""``/retrain``: ask for a retrain (operators), follow its job (everyone with a token).

A request is a manual trigger: it overrides the cooldown but not the minimum of validated labels, and is
recorded as a ``retrain_trigger`` event whether it is accepted or not. Training runs in the hub's training
worker, never inside the request: the answer is 202 with the job to poll.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from hub.api.deps import AUTH_RESPONSES, NowDep, Operator, Principal, Reader, TrainingDep, error
from hub.api.schemas.retrain import RetrainAccepted, RetrainCreate, TrainingJobPublic, TriggerPublic
from hub.errors import RetrainBlockedError, TrainingBusyError, UnknownLabelSetError

router = APIRouter(prefix="/retrain", tags=["retrain"], responses=AUTH_RESPONSES)
UNAVAILABLE = error(503, "This hub runs without training")


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
                                   label_set_id=body.label_set_id, regimes=body.regimes)
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
