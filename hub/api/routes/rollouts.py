"""``/rollouts``: start a staged rollout of a candidate (shadow → canary → fleet), watch it, steer it.

Operators start, pause, resume, promote, roll back and abort; revert the fleet to the version the last completed
rollout replaced; retry a rollout rolled back because devices could not fetch the candidate. Everyone with a
token reads. Every change is
recorded with who (``operator`` or ``operator:<actor>`` when the body names one), when and why, in the
rollout's history, the registry's audit trail and the hub's events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.exceptions import RequestValidationError

from hub.api.deps import AUTH_RESPONSES, Operator, Principal, Reader, RolloutsDep, error
from hub.api.schemas.rollouts import ActionBody, RolloutCreate, RolloutDetail, RolloutPublic
from hub.errors import RegistryError, RolloutError
from hub.rollout import StagePolicy
from hub.rollout.service import RolloutNotFound
from shared.errors import ModelError

router = APIRouter(prefix="/rollouts", tags=["rollouts"], responses=AUTH_RESPONSES)

RolloutId = Annotated[str, Path(min_length=1, max_length=64)]
Action = Literal["pause", "resume", "promote", "rollback", "abort"]
UNAVAILABLE = error(503, "This hub runs without rollouts (no registry or broker publisher)")
UNPARSABLE = error(400, "The body is not JSON")
T = TypeVar("T")


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
    "/revert",
    status_code=status.HTTP_201_CREATED,
    summary="Return the fleet to the version the last completed rollout replaced",
    responses={**UNPARSABLE, **error(409, "Nothing to revert to (no completed rollout, one running, or the "
                                          "previous version may not return)"), **UNAVAILABLE},
)
def revert_rollout(body: ActionBody, principal: Operator, rollouts: RolloutsDep) -> RolloutDetail:
    """A new staged rollout of the previous active version (retired when the last rollout completed) over the
    current one, audited on both versions; judged like any rollout, so it can itself be rolled back."""
    return RolloutDetail.from_rollout(_translate(lambda: rollouts.revert(actor=_actor(principal, body),
                                                                         reason=body.reason)))


@router.post(
    "/{rollout_id}/retry",
    status_code=status.HTTP_201_CREATED,
    summary="Roll a candidate out again after devices could not fetch it",
    responses={**UNPARSABLE, **error(404, "No such rollout"),
               **error(409, "The rollout was not rolled back for an infrastructure failure (fetch errors only)"),
               **UNAVAILABLE},
)
def retry_rollout(rollout_id: RolloutId, body: ActionBody, principal: Operator, rollouts: RolloutsDep) -> RolloutDetail:
    """A new rollout of the same candidate with the same stages' devices and policies, allowed only when the
    machine rolled the old one back because devices could not download the artifact (not for its health)."""
    return RolloutDetail.from_rollout(_translate(lambda: rollouts.retry(rollout_id, actor=_actor(principal, body),
                                                                        reason=body.reason)))


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
