"""Where a rollout stands, and what the machine tells the hub to do: frozen values, JSON-safe records."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from hub.rollout.errors import RolloutError
from hub.rollout.evidence import DeviceSummary, Estimate, Scoring, Yardstick
from hub.rollout.plan import Mode, StageName

Status = Literal["running", "completed", "rolled_back", "aborted"]
TERMINAL: frozenset[Status] = frozenset({"completed", "rolled_back", "aborted"})
DecisionKind = Literal["assign", "wait", "advance", "rollback", "complete", "abort"]
CommandKind = Literal["assign", "rollback"]
Action = Literal["start", "advance", "promote", "complete", "rollback", "timeout", "abort", "pause", "resume"]
SYSTEM = "system"
"""The actor of the machine's own transitions; operators act under their own name."""


@dataclass(frozen=True)
class Command:
    """Serve `version` in `mode` on `devices`: a retained assignment per device.

    ``rollback`` also returns the devices to the incumbent (`version`), and tells the hub they were serving
    the candidate: besides the assignment, it may send them the ``rollback`` command for an immediate swap.
    Assigning the incumbent in ``active`` mode to a device that shadows the candidate ends the shadow.
    """

    kind: CommandKind
    devices: tuple[str, ...]
    version: str
    mode: Mode = "active"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "devices": list(self.devices), "version": self.version, "mode": self.mode}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Command:
        return cls(
            _literal(d["kind"], CommandKind),
            tuple(str(x) for x in d["devices"]),
            str(d["version"]),
            _literal(d["mode"], Mode),
        )


@dataclass(frozen=True)
class Decision:
    """What to do now, why, and the numbers behind it; `stage` is the stage after the decision.

    `yardstick` says what the stage's anomaly rate and score distribution were judged against (None for
    decisions that judged no evidence: start and operator actions); `estimate` the candidate's label-free figures on
    the stage's traffic, or why there are none (None: not measured).
    """

    kind: DecisionKind
    reason: str
    stage: StageName
    at: float
    commands: tuple[Command, ...] = ()
    numbers: Mapping[str, float] = field(default_factory=dict)
    yardstick: Yardstick | None = None
    estimate: Estimate | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "reason": self.reason,
            "stage": self.stage,
            "at": self.at,
            "commands": [c.to_dict() for c in self.commands],
            "numbers": {k: v for k, v in self.numbers.items() if math.isfinite(v)},
            "yardstick": None if self.yardstick is None else self.yardstick.to_dict(),
            "estimate": None if self.estimate is None else self.estimate.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Decision:
        yardstick, estimate = d.get("yardstick"), d.get("estimate")
        return cls(
            kind=_literal(d["kind"], DecisionKind),
            reason=str(d["reason"]),
            stage=_literal(d["stage"], StageName),
            at=float(d["at"]),
            commands=tuple(Command.from_dict(c) for c in d["commands"]),
            numbers={str(k): float(v) for k, v in d["numbers"].items()},
            yardstick=None if yardstick is None else Yardstick.from_dict(yardstick),
            estimate=None if estimate is None else Estimate.from_dict(estimate),
        )


@dataclass(frozen=True)
class Transition:
    """One entry of the history: when, who (``system`` or an operator), what, from which stage to which, why."""

    at: float
    actor: str
    action: Action
    from_stage: StageName
    to_stage: StageName
    status: Status
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "from_stage": self.from_stage,
            "to_stage": self.to_stage,
            "status": self.status,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Transition:
        return cls(
            at=float(d["at"]),
            actor=str(d["actor"]),
            action=_literal(d["action"], Action),
            from_stage=_literal(d["from_stage"], StageName),
            to_stage=_literal(d["to_stage"], StageName),
            status=_literal(d["status"], Status),
            reason=str(d["reason"]),
        )


@dataclass(frozen=True)
class RolloutState:
    """A rollout's position: stage and status, its clocks, the stage devices' summaries, the history.

    `entered_at` is when the current stage began; `paused_s` the time it spent paused before
    `paused_at` (set while paused). `control` is the last live control, kept for stages without one.
    """

    rollout_id: str
    stage: StageName
    status: Status
    started_at: float
    entered_at: float
    updated_at: float
    paused: bool = False
    paused_at: float | None = None
    paused_s: float = 0.0
    devices: tuple[DeviceSummary, ...] = ()
    control: Scoring | None = None
    history: tuple[Transition, ...] = ()

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def stage_elapsed(self, now: float) -> float:
        """Seconds spent in the current stage by `now`, not counting time paused."""
        paused = self.paused_s + (now - self.paused_at if self.paused_at is not None else 0.0)
        return max(0.0, now - self.entered_at - paused)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rollout_id": self.rollout_id,
            "stage": self.stage,
            "status": self.status,
            "started_at": self.started_at,
            "entered_at": self.entered_at,
            "updated_at": self.updated_at,
            "paused": self.paused,
            "paused_at": self.paused_at,
            "paused_s": self.paused_s,
            "devices": [d.to_dict() for d in self.devices],
            "control": None if self.control is None else self.control.to_dict(),
            "history": [t.to_dict() for t in self.history],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RolloutState:
        """Rebuild a state from `to_dict` output; RolloutError when the record is malformed."""
        try:
            paused_at, control = d.get("paused_at"), d.get("control")
            return cls(
                rollout_id=str(d["rollout_id"]),
                stage=_literal(d["stage"], StageName),
                status=_literal(d["status"], Status),
                started_at=float(d["started_at"]),
                entered_at=float(d["entered_at"]),
                updated_at=float(d["updated_at"]),
                paused=bool(d["paused"]),
                paused_at=None if paused_at is None else float(paused_at),
                paused_s=float(d["paused_s"]),
                devices=tuple(DeviceSummary.from_dict(x) for x in d["devices"]),
                control=None if control is None else Scoring.from_dict(control),
                history=tuple(Transition.from_dict(t) for t in d["history"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RolloutError(f"malformed rollout state: {exc!r}") from exc


def _literal(value: Any, kind: Any) -> Any:
    if value not in get_args(kind):
        raise RolloutError(f"{value!r} is not one of {get_args(kind)}")
    return value
