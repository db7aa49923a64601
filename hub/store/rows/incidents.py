"""Rows of incidents: the incidents, their events (history), their member alarm windows, and the notification
delivery log. Backend-neutral, like every row module."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

IncidentState = Literal["pending", "open", "acknowledged", "resolved", "closed", "dropped"]
INCIDENT_STATES: tuple[IncidentState, ...] = ("pending", "open", "acknowledged", "resolved", "closed", "dropped")
ACTIVE_STATES: tuple[IncidentState, ...] = ("pending", "open", "acknowledged")
"""States that still take alarm windows and move on their own (open, close after quiet time, drop)."""

IncidentKind = Literal["alarm", "missed_failure"]
NotifyChannel = Literal["webhook", "mqtt"]
DeliveryStatus = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True, slots=True)
class IncidentRow:
    """One incident. `start_ts`/`end_ts`: first and last alarm window (device clock); the ``*_ts`` of its life
    are hub time. `revision` guards every write (a pass and a technician cannot both win)."""

    id: str
    device_id: str
    site: str | None
    kind: IncidentKind
    state: IncidentState
    start_ts: float
    end_ts: float
    windows: int
    max_score: float
    model_version: str | None
    created_ts: float
    updated_ts: float
    opened_ts: float | None = None
    acknowledged_by: str | None = None
    acknowledged_ts: float | None = None
    resolved_by: str | None = None
    resolved_ts: float | None = None
    verdict: str | None = None
    fault_type: str | None = None
    note: str | None = None
    closed_ts: float | None = None
    revision: int = 0


@dataclass(frozen=True, slots=True)
class IncidentEventRow:
    """A change of an incident: ``opened``, ``acknowledged``, ``resolved``, ``closed``, ``missed_failure``."""

    id: str
    incident_id: str
    ts: float
    kind: str
    actor: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IncidentMember:
    """An alarm window (anomaly prediction) of an incident."""

    trace_id: str
    incident_id: str
    ts: float
    score: float


@dataclass(frozen=True, slots=True)
class NotificationDraft:
    """A delivery to make for one event: the exact body is frozen now, so every retry sends the same bytes."""

    event_id: str
    incident_id: str
    channel: NotifyChannel
    target: str  # webhook URL or MQTT topic
    body: str
    site_key: str  # the `incidents.sites` key it came from (where a webhook's secret is found at send time)


@dataclass(frozen=True, slots=True)
class NotificationRow:
    """One delivery of the log: its attempts, the last answer, and whether it got through."""

    id: int
    event_id: str
    incident_id: str
    channel: NotifyChannel
    target: str
    site_key: str
    body: str
    status: DeliveryStatus
    attempts: int
    created_ts: float
    next_attempt_ts: float
    last_attempt_ts: float | None
    last_status: int | None
    last_error: str | None
    delivered_ts: float | None


@dataclass(frozen=True, slots=True)
class IncidentPass:
    """What one grouping pass writes, in one transaction: the anomaly cursor moves from `cursor_from` to
    `cursor_to`, incidents are inserted (revision 0) or updated (guarded by their revision), windows join them,
    events and their notifications are recorded."""

    cursor_from: int
    cursor_to: int
    incidents: tuple[IncidentRow, ...] = ()
    members: tuple[IncidentMember, ...] = ()
    events: tuple[IncidentEventRow, ...] = ()
    notifications: tuple[NotificationDraft, ...] = ()


@dataclass(frozen=True, slots=True)
class IncidentQuery:
    """Filters and paging of the incident list (newest first by `start_ts`)."""

    device_id: str | None = None
    site: str | None = None
    states: tuple[IncidentState, ...] = ()
    since: float | None = None  # end_ts >= since (device clock)
    limit: int = 100
    offset: int = 0
