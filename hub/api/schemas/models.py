"""Bodies of ``/models``: registered versions, their gate decisions and audit trail."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub.api.schemas.base import ActorName, Public
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
    gate_verdict: str | None = Field(default=None, description="pass, fail, insufficient_data, skipped, or none "
                                     "(a rollout takes only a candidate whose gate passed or was skipped)")

    @classmethod
    def from_row(cls, r: ModelVersionRow) -> ModelPublic:
        return cls(version=r.version, parent_version=r.parent_version, status=r.status, created_ts=r.created_ts,
                   updated_ts=r.updated_ts, created_by=r.created_by, reason=r.reason, trigger_id=r.trigger_id,
                   sha256=r.sha256, gate_verdict=None if not r.gate else str(r.gate.get("verdict")))


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


class GateSummaryPublic(Public):
    """A gate decision in short (`hub.gate.summary`): the verdict, the version's status after it, the checks
    that decided it and their numbers, and how the judged rows were split (method, block size, why)."""

    verdict: str = Field(description="pass, fail, insufficient_data, or skipped (with who and why)")
    status: str | None = Field(description="the version's registry status after the gate")
    deciding: list[str]
    numbers: dict[str, float | int | None]
    split: dict[str, Any] | None


class ModelRegister(BaseModel):
    """A version directory on the hub host to register, why, and whether to skip the gate (audited)."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=4096, description="a version directory (model.onnx, manifest.json) "
                      "on the hub host")
    reason: str = Field(min_length=1, max_length=2000)
    skip_gate: bool = Field(default=False, description="clear it for rollout unjudged; the reason is recorded as "
                            "its gate decision and in its audit trail")
    actor: ActorName | None = Field(default=None, description="who registers, as stated by the caller (tokens carry "
                                    "only a role)")


class ModelRegistered(ModelPublic):
    """The registered version, its status after the gate, and the gate's decision in short."""

    gate: GateSummaryPublic | None
