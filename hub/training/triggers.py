"""When to retrain: a pure decision over counts and times (no clock, no store; `now` is passed in).

A retrain is wanted for one of four reasons, in this order of precedence: an operator asked (``manual``),
drift was detected since the last retrain (``drift``), enough new validated labels arrived (``labels``),
or the schedule is due (``schedule``). Two guards may block it:

- ``min_labels``: fewer validated labels overall than `TriggerPolicy.min_total_labels`; a model cannot be
  trained nor gated on a handful of labels, so not even an operator overrides this;
- ``cooldown``: the last retrain started less than `cooldown_s` ago; this stops a drift alarm that keeps
  firing from retraining in a loop. A manual request overrides it.

>>> policy = TriggerPolicy(min_new_labels=100, min_total_labels=300, cooldown_s=3600.0, schedule_interval_s=None)
>>> d = decide(policy, now=10_000.0, last_retrain_ts=9_000.0, new_labels=150, total_labels=900, drift_events=0,
...            schedule_due=False, manual=False)
>>> d.fire, d.kind, d.blocked_by
(False, 'labels', 'cooldown')
>>> decide(policy, now=10_000.0, last_retrain_ts=9_000.0, new_labels=0, total_labels=900, drift_events=0,
...        schedule_due=False, manual=True).fire
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TriggerKind = Literal["manual", "drift", "labels", "schedule"]
BlockedBy = Literal["cooldown", "min_labels"]
TRIGGER_EVENT = "retrain_trigger"
"""The hub event every firing decision (and every manual request, even a refused one) records."""


class TriggerPolicy(BaseModel):
    """The trigger thresholds (``HubSettings.training.triggers``). Defaults, and why:

    - 200 new labels: enough to move a model trained on thousands of windows, rare enough not to churn;
    - 500 labels overall: a 30% evaluation slice then holds about 150, the order the gate needs to judge;
    - a 6 h cooldown: a drift alarm re-fires every drift interval (1 h), retraining does not;
    - weekly schedule: feedback keeps flowing into the model even when nothing alarms.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_new_labels: int = Field(default=200, ge=1, description="new validated labels since the last retrain")
    min_total_labels: int = Field(default=500, ge=0, description="validated labels needed for any retrain")
    cooldown_s: float = Field(default=6 * 3600.0, ge=0, allow_inf_nan=False, description="after a retrain")
    schedule_interval_s: float | None = Field(
        default=7 * 86400.0, gt=0, allow_inf_nan=False, description="retrain at least this often; None: never"
    )


@dataclass(frozen=True)
class TriggerDecision:
    """Whether to retrain now. `kind` is what asks for it (None: nothing does); `blocked_by` the guard
    that refuses it; `reason` says why it was asked, `detail` why it was blocked (empty when not)."""

    fire: bool
    kind: TriggerKind | None
    reason: str
    blocked_by: BlockedBy | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TriggerInputs:
    """What a trigger decision is made of, read from the store at one moment."""

    label_set_id: str
    total_labels: int
    new_labels: int
    drift_events: int
    drift_cursor: int  # the newest drift event id seen
    drift_scopes: tuple[str, ...]
    last_retrain_ts: float | None


@dataclass(frozen=True)
class TriggerOutcome:
    """A decision, the event that records it, and the job it queued (None when it did not fire)."""

    decision: TriggerDecision
    event_id: int
    trigger_id: str
    job_id: str | None
    inputs: TriggerInputs


def schedule_due(policy: TriggerPolicy, *, now: float, last_retrain_ts: float | None) -> bool:
    """True when a schedule is set and the last retrain is at least one interval old (or there was none).

    >>> schedule_due(TriggerPolicy(schedule_interval_s=100.0), now=250.0, last_retrain_ts=100.0)
    True
    >>> schedule_due(TriggerPolicy(schedule_interval_s=None), now=250.0, last_retrain_ts=None)
    False
    """
    if policy.schedule_interval_s is None:
        return False
    return last_retrain_ts is None or now - last_retrain_ts >= policy.schedule_interval_s


def decide(
    policy: TriggerPolicy,
    *,
    now: float,
    last_retrain_ts: float | None,
    new_labels: int,
    total_labels: int,
    drift_events: int,
    schedule_due: bool,
    manual: bool,
) -> TriggerDecision:
    """Retrain now? See the module docstring for precedence and guards. Pure: same inputs, same decision."""
    kind: TriggerKind
    if manual:
        kind, reason = "manual", "requested by an operator"
    elif drift_events > 0:
        kind, reason = "drift", f"{drift_events} drift event(s) since the last retrain"
    elif new_labels >= policy.min_new_labels:
        kind = "labels"
        reason = f"{new_labels} new validated labels since the last retrain (>= {policy.min_new_labels})"
    elif schedule_due:
        since = "no retrain yet" if last_retrain_ts is None else f"last retrain {_hours(now - last_retrain_ts)} ago"
        kind, reason = "schedule", f"scheduled every {_hours(policy.schedule_interval_s or 0.0)}: {since}"
    else:
        return TriggerDecision(False, None, _idle(policy, new_labels))
    if total_labels < policy.min_total_labels:
        detail = (f"{total_labels} validated labels, need {policy.min_total_labels} to train and gate a model"
                  + (" (a manual request overrides the cooldown, not this)" if manual else ""))
        return TriggerDecision(False, kind, reason, "min_labels", detail)
    if not manual and last_retrain_ts is not None and now - last_retrain_ts < policy.cooldown_s:
        detail = f"last retrain {_hours(now - last_retrain_ts)} ago, cooldown {_hours(policy.cooldown_s)}"
        return TriggerDecision(False, kind, reason, "cooldown", detail)
    return TriggerDecision(True, kind, reason)


def _idle(policy: TriggerPolicy, new_labels: int) -> str:
    return f"no drift, {new_labels} new labels (< {policy.min_new_labels}), schedule not due"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600.0:.1f} h"
