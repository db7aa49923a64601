"""Rollouts: live progress per stage and device, the current decision in words, and (operators) start, pause,
resume, promote, roll back, abort and revert. The live part is an HTML fragment the page polls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from hub.api.deps import NowDep, RolloutsDep, ServicesDep
from hub.app.render import estimate_text
from hub.console.deps import PREFIX, ConsoleDep, ConsoleError, Form, Operator, Viewer, field, render, see_other
from hub.console.session import Session
from hub.console.words import decision_words
from hub.errors import RegistryError, RolloutError
from hub.rollout.records import Rollout
from hub.rollout.service import RolloutNotFound, RolloutService
from shared.errors import ModelError

router = APIRouter()

RolloutId = Annotated[str, Path(min_length=1, max_length=64)]
Action = Literal["pause", "resume", "promote", "rollback", "abort"]
T = TypeVar("T")


def _translate(call: Callable[[], T]) -> T:
    """Rollout errors as pages: unknown → 404, anything the state refuses → 409 (as the API does)."""
    try:
        return call()
    except (RolloutNotFound, RegistryError) as exc:
        raise ConsoleError(404, str(exc)) from None
    except (RolloutError, ModelError) as exc:
        raise ConsoleError(409, str(exc)) from None


def _actor(session: Session) -> str:
    return f"{session.role}:{session.who}"


def _progress(r: Rollout, now: float) -> dict[str, Any]:
    """What the live fragment shows: each stage with its devices, the current stage's per-device summary, and the
    candidate's label-free estimate on the stage's traffic as the last judgement recorded it."""
    summaries = {d.device_id: d for d in r.state.devices}
    names = [s.name for s in r.plan.stages]
    current = names.index(r.state.stage) if r.state.stage in names else 0
    stages = []
    for i, s in enumerate(r.plan.stages):
        done = i < current or r.state.status == "completed"
        stages.append({"name": s.name, "mode": s.mode, "policy": s.policy,
                       "state": "done" if done else ("current" if i == current else "waiting"),
                       "devices": [(d, summaries.get(d) if i == current else None) for d in s.devices]})
    estimate = None if r.decision is None or r.decision.estimate is None else r.decision.estimate.to_dict()
    return {"stages": stages, "elapsed": r.state.stage_elapsed(now),
            "words": decision_words(None if r.decision is None else r.decision.to_dict(), paused=r.state.paused,
                                    status=r.state.status),
            "estimate": None if estimate is None else estimate_text(estimate)}


@router.get("/rollouts")
def rollouts_page(request: Request, session: Viewer, console: ConsoleDep, services: ServicesDep,
                  rollouts: RolloutsDep, now: NowDep) -> HTMLResponse:
    recent = rollouts.recent(limit=50)
    candidates = ([] if services.registry is None else
                  [m.version for m in services.store.model_versions(status="candidate", limit=50)])
    return render(request, console, "rollouts.html", session, rollouts=recent, now=now, candidates=candidates,
                  running=rollouts.running())


@router.post("/rollouts")
def start(session: Operator, form: Form, rollouts: RolloutsDep) -> RedirectResponse:
    """Start a rollout of the chosen candidate: a canary fraction or device ids (comma separated), then the fleet."""
    candidate = field(form, "candidate", max_len=128)
    reason = field(form, "reason")
    if not candidate or not reason:
        raise ConsoleError(400, "choose a candidate and say why")
    canary_text = field(form, "canary", default="0.1", max_len=4000) or "0.1"
    canary: float | list[str]
    try:
        canary = float(canary_text)
    except ValueError:
        canary = [d.strip() for d in canary_text.split(",") if d.strip()]
    if isinstance(canary, float) and not 0 < canary < 1:
        raise ConsoleError(400, "a canary fraction is between 0 and 1 (or give device ids)")
    shadow = form.get("shadow") == "on"
    rollout = _translate(lambda: rollouts.start(candidate, actor=_actor(session), reason=reason, canary=canary,
                                                shadow=shadow))
    return see_other(f"{PREFIX}/rollouts/{rollout.id}")


@router.post("/rollouts/revert")
def revert(session: Operator, form: Form, rollouts: RolloutsDep) -> RedirectResponse:
    reason = field(form, "reason") or "reverted from the console"
    rollout = _translate(lambda: rollouts.revert(actor=_actor(session), reason=reason))
    return see_other(f"{PREFIX}/rollouts/{rollout.id}")


def _one(rollouts: RolloutService, rollout_id: str) -> Rollout:
    return _translate(lambda: rollouts.get(rollout_id))


@router.get("/rollouts/{rollout_id}")
def rollout_page(request: Request, rollout_id: RolloutId, session: Viewer, console: ConsoleDep,
                 rollouts: RolloutsDep, now: NowDep) -> HTMLResponse:
    r = _one(rollouts, rollout_id)
    return render(request, console, "rollout.html", session, r=r, now=now, **_progress(r, now))


@router.get("/rollouts/{rollout_id}/live")
def rollout_live(request: Request, rollout_id: RolloutId, session: Viewer, console: ConsoleDep,
                 rollouts: RolloutsDep, now: NowDep) -> HTMLResponse:
    """The live part of the rollout page alone (polled every ``console.poll_s``)."""
    r = _one(rollouts, rollout_id)
    return render(request, console, "rollout_live.html", session, r=r, now=now, **_progress(r, now))


@router.post("/rollouts/{rollout_id}/{action}")
def act(rollout_id: RolloutId, action: Action, session: Operator, form: Form,
        rollouts: RolloutsDep) -> RedirectResponse:
    reason = field(form, "reason") or f"{action} from the console"
    _translate(lambda: getattr(rollouts, action)(rollout_id, actor=_actor(session), reason=reason))
    return see_other(f"{PREFIX}/rollouts/{rollout_id}")
