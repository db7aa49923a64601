"""Bodies of ``/drift``: stored drift reports, and drift references taken from the fleet."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.api.schemas.base import ActorName, Public
from hub.store.rows import DriftReferenceRow, DriftReportRow


class DriftReportPublic(Public):
    id: int
    ts: float
    scope: str
    verdict: str
    report: dict[str, Any] = Field(description="DriftReport.to_dict(): per-feature PSI, tests, drifted features")

    @classmethod
    def from_row(cls, row: DriftReportRow) -> DriftReportPublic:
        return cls(id=row.id, ts=row.ts, scope=row.scope, verdict=row.verdict, report=row.report)


class DriftReferenceCreate(BaseModel):
    """Take a version's drift reference from its live stats in ``[start, end)`` (epoch seconds), judged healthy."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    start: float
    end: float
    devices: list[str] | None = Field(default=None, min_length=1, max_length=10_000,
                                      description="only these devices (default: every device with stats of it)")
    reason: str = Field(min_length=1, max_length=2000)
    device_baselines: bool | None = Field(
        default=None, description="compare each device and cohort with its own baseline from this window "
        "(default: the hub's drift.device_baselines)")
    actor: ActorName | None = Field(default=None, description="who asks, as stated by the caller (recorded as "
                                    "operator:<actor>)")

    @model_validator(mode="after")
    def _window(self) -> DriftReferenceCreate:
        if not (math.isfinite(self.start) and math.isfinite(self.end)) or self.end <= self.start:
            raise ValueError("end must be after start (epoch seconds)")
        return self


class DriftReferencePublic(Public):
    """A reference taken from the fleet: who, when, why, which window, how many windows, and (for the current
    one) its fleet-wide counts per feature over the manifest's bins."""

    id: int
    version: str
    ts: float
    actor: str
    reason: str
    start: float
    end: float
    devices: list[str] | None = Field(description="the devices asked for; null: every device")
    device_baselines: bool
    windows: int
    summary: dict[str, Any] = Field(description="stats rows and devices used, windows per device and cohort, "
                                    "what was left out as not healthy")
    features: dict[str, list[int]] | None = Field(
        default=None, description="the fleet's counts per feature (same bins as the manifest); current one only")
    score_hist: list[int] | None = None

    @classmethod
    def from_row(cls, row: DriftReferenceRow, feature_names: list[str] | None = None) -> DriftReferencePublic:
        fleet = row.counts.get("fleet")
        features = score = None
        if fleet is not None:
            names = feature_names or [f"f{i}" for i in range(len(fleet["feature_hist"]))]
            features = dict(zip(names, fleet["feature_hist"], strict=False))
            score = fleet["score_hist"]
        return cls(id=row.id, version=row.version, ts=row.ts, actor=row.actor, reason=row.reason, start=row.start,
                   end=row.end, devices=row.devices, device_baselines=row.device_baselines, windows=row.windows,
                   summary=row.summary, features=features, score_hist=score)


class DriftReferenceStatus(Public):
    """What drift compares a version with: its current stored reference (null: the manifest's), and its history."""

    version: str
    source: str = Field(description="'fleet': a stored reference taken from the fleet; 'manifest': none yet")
    current: DriftReferencePublic | None
    history: list[DriftReferencePublic] = Field(description="every reference taken, newest first, without counts")
