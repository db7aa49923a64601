"""Bodies of ``/models``: registered versions, their gate decisions and audit trail."""

from __future__ import annotations

from typing import Any

from hub.api.schemas.base import Public
from hub.store import AuditRow, ModelVersionRow

VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"


class ModelPublic(Public):
    """A registered version: its status and where it came from."""

    version: str
    parent_version: str | None
    status: str
    created_ts: float
    updated_ts: float
    created_by: str
    reason: str
    trigger_id: str | None
    sha256: str

    @classmethod
    def from_row(cls, r: ModelVersionRow) -> ModelPublic:
        return cls(version=r.version, parent_version=r.parent_version, status=r.status, created_ts=r.created_ts,
                   updated_ts=r.updated_ts, created_by=r.created_by, reason=r.reason, trigger_id=r.trigger_id,
                   sha256=r.sha256)


class AuditPublic(Public):
    """One change to a version: who, when, what, why, and the numbers behind it."""

    ts: float
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    reason: str
    details: dict[str, Any]

    @classmethod
    def from_row(cls, a: AuditRow) -> AuditPublic:
        return cls(ts=a.ts, actor=a.actor, action=a.action, from_status=a.from_status, to_status=a.to_status,
                   reason=a.reason, details=a.details)


class ModelDetail(ModelPublic):
    """A version with its signature, manifest, gate decision and complete audit trail (oldest first)."""

    signature: str
    manifest: dict[str, Any]
    gate: dict[str, Any] | None
    audit: list[AuditPublic]
