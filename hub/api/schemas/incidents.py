"""Bodies of ``/incidents``: incidents, their windows and history, and a technician's acknowledgement, verdict
(one or many incidents) and missed-failure report."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, model_validator

from hub.api.schemas.base import DeviceId, Public
from hub.incidents.verdicts import Verdict
from hub.store.rows import IncidentEventRow, IncidentMember, IncidentRow, IncidentState, NotificationRow

TechnicianId = Field(min_length=1, max_length=64, description="who (recorded on the incident and its labels)")
FaultType = Field(default=None, min_length=1, max_length=64, description="required for a confirmed fault")
Note = Field(default=None, max_length=2000)
IncidentIds = Field(min_length=1, max_length=500)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AcknowledgeBody(_Body):
    technician_id: str = TechnicianId


class ResolveBody(_Body):
    """A technician's verdict: confirmed_fault (with fault_type), false_alarm or no_fault_found."""

    technician_id: str = TechnicianId
    verdict: Verdict
    fault_type: str | None = FaultType
    note: str | None = Note

    @model_validator(mode="after")
    def _fault_type(self) -> ResolveBody:
        if self.verdict == "confirmed_fault" and not self.fault_type:
            raise ValueError("a confirmed fault needs a fault_type (e.g. bearing)")
        if self.verdict != "confirmed_fault" and self.fault_type:
            raise ValueError(f"a {self.verdict} verdict has no fault_type")
        return self


class BatchResolveBody(ResolveBody):
    incident_ids: list[str] = IncidentIds


class MissedFailureCreate(_Body):
    """A failure no alarm covered, on a device and a time range (device clock, inclusive)."""

    device_id: DeviceId
    start_ts: FiniteFloat
    end_ts: FiniteFloat
    fault_type: str = Field(min_length=1, max_length=64)
    technician_id: str = TechnicianId
    note: str | None = Note

    @model_validator(mode="after")
    def _range(self) -> MissedFailureCreate:
        if self.end_ts < self.start_ts:
            raise ValueError("end_ts is before start_ts")
        return self


class IncidentPublic(Public):
    id: str
    device_id: str
    site: str | None
    kind: Literal["alarm", "missed_failure"]
    state: IncidentState
    start_ts: float = Field(description="first alarm window (device clock)")
    end_ts: float = Field(description="last alarm window (device clock)")
    windows: int = Field(description="alarm windows grouped in it")
    max_score: float
    model_version: str | None
    created_ts: float
    updated_ts: float
    opened_ts: float | None
    acknowledged_by: str | None
    acknowledged_ts: float | None
    resolved_by: str | None
    resolved_ts: float | None
    verdict: str | None
    fault_type: str | None
    note: str | None
    closed_ts: float | None

    @classmethod
    def from_row(cls, row: IncidentRow) -> IncidentPublic:
        return cls(**{k: getattr(row, k) for k in cls.model_fields})


class WindowPublic(Public):
    trace_id: str
    ts: float
    score: float

    @classmethod
    def from_row(cls, m: IncidentMember) -> WindowPublic:
        return cls(trace_id=m.trace_id, ts=m.ts, score=m.score)


class IncidentEventPublic(Public):
    id: str
    ts: float
    kind: str
    actor: str
    detail: dict[str, Any]

    @classmethod
    def from_row(cls, e: IncidentEventRow) -> IncidentEventPublic:
        return cls(id=e.id, ts=e.ts, kind=e.kind, actor=e.actor, detail=e.detail)


class NotificationPublic(Public):
    id: int
    event_id: str
    channel: Literal["webhook", "mqtt"]
    target: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    created_ts: float
    next_attempt_ts: float
    last_attempt_ts: float | None
    last_status: int | None
    last_error: str | None
    delivered_ts: float | None

    @classmethod
    def from_row(cls, n: NotificationRow) -> NotificationPublic:
        return cls(**{k: getattr(n, k) for k in cls.model_fields})


class IncidentDetail(IncidentPublic):
    """An incident with its alarm windows (trace ids), its history and its notifications."""

    window_traces: list[WindowPublic]
    events: list[IncidentEventPublic]
    notifications: list[NotificationPublic]


class BatchItem(Public):
    incident_id: str
    status: int = Field(description="200 resolved; 404 unknown; 409 not in a state to resolve")
    detail: str | None = None
    incident: IncidentPublic | None = None
