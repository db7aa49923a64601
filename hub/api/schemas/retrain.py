"""Bodies of ``/retrain``: a manual retrain request, the trigger's decision and training jobs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub.api.schemas.base import ActorName, Public
from hub.api.schemas.models import GateSummaryPublic
from hub.store.rows import TrainingJobRow
from hub.training.settings import RegimeSource


class RetrainCreate(BaseModel):
    """Why (required), who (optional, recorded as ``operator:<actor>``), which label set (default: the
    current annotations, validated now) and where the regime statistics come from (recorded on the job)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)
    actor: ActorName | None = Field(default=None, description="who asks, as stated by the caller (tokens carry only "
                                    "a role)")
    label_set_id: str | None = Field(default=None, min_length=1, max_length=64)
    regimes: RegimeSource | None = Field(default=None, description="feature set 2's regime statistics of the "
                                         "candidate: 'parent' keeps the active model's, 'field' learns them from the "
                                         "devices' raw windows; default: the hub's training.regimes")


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
                                     "candidate on pass, rejected on fail, insufficient_data otherwise")
    error: str | None
    created_ts: float
    started_ts: float | None
    finished_ts: float | None
    details: dict[str, Any]
    summary: GateSummaryPublic | None = Field(default=None, description="the gate's decision in short: verdict, "
                                              "the version's status, the deciding checks, numbers, the split")

    @classmethod
    def from_row(cls, row: TrainingJobRow) -> TrainingJobPublic:
        summary = row.details.get("gate_summary")
        return cls(
            id=row.id, status=row.status, stage=row.stage, progress=row.progress, trigger=row.trigger,
            trigger_id=row.trigger_id, actor=row.actor, reason=row.reason, label_set_id=row.label_set_id,
            result_version=row.result_version, gate_verdict=row.gate_verdict, error=row.error,
            created_ts=row.created_ts, started_ts=row.started_ts, finished_ts=row.finished_ts, details=row.details,
            summary=None if not summary else GateSummaryPublic(**summary),
        )
