"""Staged model rollouts as a pure state machine: optional shadow → canary → fleet, or roll back.

- `plan`: `plan_rollout` picks stage devices deterministically (covering cohorts); `RolloutPlan`,
  `StagePolicy` (durations, windows, reporting, timeouts), `HealthLimits`.
- `evidence`: what devices report during a stage (`Evidence`, `Scoring`), whether the control can be trusted
  (`ControlTrust`), the candidate's own `Expectation`, and the `Yardstick` a stage was judged against.
- `traffic`: the candidate's expectation on the stage's traffic (its scores on the vectors devices sent), the
  yardstick when the control is not trusted, and its label-free `Estimate` there (evidence that may hold a stage).
- `health`: `assess` turns evidence into failures (roll back now) and holds (do not advance yet).
- `machine`: `start` and `next_step`; `actions`: `pause`, `resume`, `promote`, `rollback`, `abort`.
- `state`: `RolloutState`, `Decision`, `Command`, `Transition`, each with `to_dict` / `from_dict`.
- `stragglers`: which devices no rollout speaks for serve another version than the active one.
- `reports`: a stage's `Evidence`, the baseline, `ControlTrust` and `Expectation` from the hub store's rows.
- `records`: what a rollout leaves behind (the stored `Rollout`, hub events, registry moves, assignment ids).
- `errors`: `RolloutError` and the service's `RolloutNotFound`, `RolloutConflict`.
- `service`: `RolloutService`, the one package here that touches the store, the registry and the broker (and
  `TrafficYardstick`, which scores the candidate with onnxruntime on the stage's traffic).
- `settings`: `HealthLimitsSettings`, the validated limits of `HubSettings.rollout_limits`.

Apart from `service`, no clock, broker or database: callers pass `now` and evidence in, persist the state
and carry out the decision's commands (publish retained assigns, send rollback commands). Invalid transitions
raise `RolloutError`.
"""

from hub.rollout.actions import abort, pause, promote, resume, rollback
from hub.rollout.errors import RolloutConflict, RolloutError, RolloutNotFound
from hub.rollout.evidence import (
    ControlTrust,
    DeviceSummary,
    Estimate,
    Evidence,
    Expectation,
    Scoring,
    Yardstick,
)
from hub.rollout.health import Assessment, assess
from hub.rollout.machine import next_step, start
from hub.rollout.plan import (
    DEFAULT_POLICIES,
    HealthLimits,
    Mode,
    RolloutPlan,
    StageName,
    StagePlan,
    StagePolicy,
    plan_rollout,
)
from hub.rollout.state import SYSTEM, Command, Decision, RolloutState, Status, Transition

__all__ = [
    "DEFAULT_POLICIES",
    "SYSTEM",
    "Assessment",
    "Command",
    "ControlTrust",
    "Decision",
    "DeviceSummary",
    "Estimate",
    "Evidence",
    "Expectation",
    "HealthLimits",
    "Mode",
    "RolloutConflict",
    "RolloutError",
    "RolloutNotFound",
    "RolloutPlan",
    "RolloutState",
    "Scoring",
    "StageName",
    "StagePlan",
    "StagePolicy",
    "Status",
    "Transition",
    "Yardstick",
    "abort",
    "assess",
    "next_step",
    "pause",
    "plan_rollout",
    "promote",
    "resume",
    "rollback",
    "start",
]
