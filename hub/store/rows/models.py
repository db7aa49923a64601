"""Rows of the model lifecycle: registry versions and their audit trail, rollouts and their stage stats,
training jobs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# --- model registry -------------------------------------------------------------------------------

ModelStatus = Literal["candidate", "rejected", "insufficient_data", "shadow", "canary", "active", "retired",
                      "rolled_back"]
MODEL_STATUSES: tuple[str, ...] = ("candidate", "rejected", "insufficient_data", "shadow", "canary", "active",
                                   "retired", "rolled_back")
"""``rejected``: the gate (or an operator) found the version worse; ``insufficient_data``: the gate could not
judge it (too little labelled data); neither is ever rolled out."""


@dataclass(frozen=True, slots=True)
class ModelVersionRow:
    """One model version in the registry, with its manifest, signature and gate record."""

    version: str
    parent_version: str | None
    status: str
    created_ts: float
    updated_ts: float
    created_by: str
    reason: str
    trigger_id: str | None
    sha256: str
    signature: str
    manifest: dict[str, Any]
    gate: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One change to a model version: who, when, what, why, and the numbers behind it."""

    id: int
    ts: float
    version: str
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    reason: str
    details: dict[str, Any]


# --- rollouts -------------------------------------------------------------------------------------

ROLLOUT_EVENT = "rollout"
"""The hub event kind of every rollout change (payload: rollout_id, action, actor, stages, status, reason…)."""


@dataclass(frozen=True, slots=True)
class RolloutRow:
    """One rollout: who started it and why, its plan, its state, its last decision; `revision` counts writes."""

    id: str
    candidate: str
    incumbent: str
    status: str
    created_ts: float
    updated_ts: float
    actor: str
    reason: str
    plan: dict[str, Any]
    state: dict[str, Any]
    decision: dict[str, Any] | None = None
    revision: int = 0


@dataclass(frozen=True, slots=True)
class StageStatsRow:
    """The part of a stats row a rollout judges (no feature histograms): cheap to read on every tick."""

    device_id: str
    model_version: str | None
    received_at: float
    windows: int
    anomalies: int
    inference_errors: int
    nan_scores: int
    latency_p99_ms: float | None
    score_hist: list[int]


# --- training -------------------------------------------------------------------------------------

JobStatus = Literal["queued", "running", "succeeded", "failed"]
JOB_STATUSES: tuple[str, ...] = ("queued", "running", "succeeded", "failed")
ACTIVE_JOB_STATUSES: tuple[str, ...] = ("queued", "running")


@dataclass(frozen=True, slots=True)
class TrainingJobRow:
    """One retraining job: why it ran, how far it got, what it made.

    `result_version` is the version reserved for the job (registered once the job gets that far);
    `gate_verdict` is ``pass``, ``fail`` or ``insufficient_data``; `drift_cursor` is the newest drift
    event the job's trigger had seen, so the next trigger counts only newer ones.
    """

    id: str
    status: str
    stage: str
    progress: float
    trigger: str
    trigger_id: str | None
    actor: str
    reason: str
    label_set_id: str | None
    result_version: str | None
    gate_verdict: str | None
    error: str | None
    drift_cursor: int
    created_ts: float
    started_ts: float | None
    finished_ts: float | None
    details: dict[str, Any]

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_JOB_STATUSES
