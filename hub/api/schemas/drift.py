"""Bodies of ``/drift``: stored drift reports."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from hub.api.schemas.base import Public
from hub.store.rows import DriftReportRow


class DriftReportPublic(Public):
    id: int
    ts: float
    scope: str
    verdict: str
    report: dict[str, Any] = Field(description="DriftReport.to_dict(): per-feature PSI, tests, drifted features")

    @classmethod
    def from_row(cls, row: DriftReportRow) -> DriftReportPublic:
        return cls(id=row.id, ts=row.ts, scope=row.scope, verdict=row.verdict, report=row.report)
