"""When to retrain: a pure decision over counts and times (no clock, no store; `now` is passed in).

A retrain is wanted for one of five reasons, in this order of precedence: an operator asked (``manual``),
drift was detected since the last retrain (``drift``), the labels show the active version performing
significantly worse than at its gate (``performance``: `hub.training.performance`), enough new validated
labels arrived (``labels``), or the schedule is due (``schedule``). Four guards may block it:

- ``min_labels``: fewer validated labels overall than `TriggerPolicy.min_total_labels`; a model cannot be
  trained nor gated on a handful of labels, so not even an operator overrides this;
- ``awaiting_data``: the last retrain's gate could not judge its candidate (``insufficient_data``: too few
  failures in the evaluation slice). That retrain changed nothing, so it starts no cooldown; the next one
  waits until the validated labels have grown by `TriggerPolicy.insufficient_retry_growth` over what it
  used, since the same labels would give the same verdict. A manual request overrides it;
- ``cooldown``: the last retrain the gate judged started less than `cooldown_s` ago; this stops a drift
  alarm that keeps firing from retraining in a loop. A manual request overrides it;
- ``no_new_labels``: no validated label arrived since the last retrain. Retraining is reproducible, so the
  same label set would give the same model again; drift that persists after a retrain needs new labels
  (or an operator) to act on. A manual request overrides it.

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

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TriggerKind = Literal["manual", "drift", "performance", "labels", "schedule"]
BlockedBy = Literal["awaiting_data", "cooldown", "min_labels", "no_new_labels"]
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
    drift_scopes: tuple[Literal["fleet", "cohort", "device"], ...] = Field(
        default=("fleet",), min_length=1,
        description="drift of which scopes (of the active model version) asks for a retrain",
    )
    insufficient_retry_growth: float = Field(
        default=0.25, gt=0, allow_inf_nan=False,
        description="after a retrain the gate could not judge (insufficient_data), retry once the validated "
                    "labels have grown by this fraction of what it used; no cooldown applies to it",
    )


def retry_threshold(policy: TriggerPolicy, unjudged_labels: int) -> int:
    """The validated labels needed to retry after a retrain on `unjudged_labels` that the gate could not judge.

    >>> retry_threshold(TriggerPolicy(), 4476)
    5595
    """
    return math.ceil(unjudged_labels * (1.0 + policy.insufficient_retry_growth))


def counts_for_retrain(policy: TriggerPolicy, scope: str, active_version: str | None) -> bool:
    """Whether a drift event of `scope` (``fleet@v1``, ``cohort:site-a/pump@v1``, ``device:d1@v1``) asks
    for a retrain: its kind is in ``policy.drift_scopes`` and it judged the active version (any, if none).

    >>> policy = TriggerPolicy()
    >>> [counts_for_retrain(policy, s, "v2") for s in ("fleet@v2", "fleet@v1", "device:d1@v2")]
    [True, False, False]
    """
    name, _, version = scope.rpartition("@")
    kind = name.split(":", 1)[0]
    return kind in policy.drift_scopes and (active_version is None or version == active_version)


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
    last_retrain_ts: float | None  # the last retrain the gate judged (or that failed): the cooldown's start
    retry_at: int | None = None  # the last retrain was not judged (insufficient_data): labels to retry at
    performance_events: int = 0  # performance_degraded events of the active version since the cursor


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


def in_cooldown(policy: TriggerPolicy, *, now: float, last_retrain_ts: float | None) -> bool:
    """Whether the last retrain started less than `cooldown_s` before `now` (no automatic trigger may fire)."""
    return last_retrain_ts is not None and now - last_retrain_ts < policy.cooldown_s


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
    retry_at: int | None = None,
    performance_events: int = 0,
) -> TriggerDecision:
    """Retrain now? See the module docstring for precedence and guards. Pure: same inputs, same decision.

    `last_retrain_ts` is the last retrain the gate judged; `retry_at` is set when a later one was not judged
    (`retry_threshold` of the labels it used)."""
    kind: TriggerKind
    if manual:
        kind, reason = "manual", "requested by an operator"
    elif drift_events > 0:
        kind, reason = "drift", f"{drift_events} drift event(s) since the last retrain"
    elif performance_events > 0:
        kind, reason = "performance", (f"{performance_events} performance_degraded event(s) of the active version "
                                       "since the last retrain")
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
    if not manual and retry_at is not None and total_labels < retry_at:
        detail = (f"the last retrain's gate had too little data to judge (insufficient_data): retrying at "
                  f"{retry_at} validated labels, {total_labels} now")
        return TriggerDecision(False, kind, reason, "awaiting_data", detail)
    if not manual and last_retrain_ts is not None and in_cooldown(policy, now=now, last_retrain_ts=last_retrain_ts):
        detail = f"last retrain {_hours(now - last_retrain_ts)} ago, cooldown {_hours(policy.cooldown_s)}"
        return TriggerDecision(False, kind, reason, "cooldown", detail)
    if not manual and last_retrain_ts is not None and new_labels == 0:
        detail = "no validated label since the last retrain: the same inputs would give the same model"
        return TriggerDecision(False, kind, reason, "no_new_labels", detail)
    return TriggerDecision(True, kind, reason)


def _idle(policy: TriggerPolicy, new_labels: int) -> str:
    return f"no drift, {new_labels} new labels (< {policy.min_new_labels}), schedule not due"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600.0:.1f} h"
