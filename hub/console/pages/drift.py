"""Drift: a feature × time heat map of PSI per scope, and the latest verdict with its test and threshold in
words; beside it each version's label-free performance estimate per scope, its realized figures once labels came back
and the estimate's error (the same figures as ``GET /performance``, `performance_now`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from hub.api.deps import NowDep, StoreDep
from hub.console.charts import heat
from hub.console.deps import ConsoleDep, Viewer, render
from hub.console.words import drift_words
from hub.training.service.performance import performance_now

router = APIRouter()

COLUMNS = 24
SCOPES_SCANNED = 200
"""Recent reports read for the scope list (one drift pass writes a report per scope)."""


def heat_rows(reports: list[dict[str, Any]]) -> list[tuple[str, list[tuple[float | None, str, bool]]]]:
    """One row per feature (in the newest report's order): per report, its PSI, colour and whether it drifted."""
    if not reports:
        return []
    names = [str(f["name"]) for f in reports[-1].get("features", [])]
    rows = []
    for name in names:
        cells = []
        for r in reports:
            f = next((f for f in r.get("features", []) if f.get("name") == name), None)
            psi = None if f is None else f.get("psi")
            cells.append((psi, heat(psi, float(r.get("psi_threshold") or 0.2)), bool(f and f.get("drifted"))))
        rows.append((name, cells))
    return rows


@router.get("/drift")
def drift_page(request: Request, session: Viewer, console: ConsoleDep, store: StoreDep, now: NowDep,
               scope: Annotated[str, Query(min_length=1, max_length=200)] = "fleet") -> HTMLResponse:
    recent = store.drift_reports(limit=SCOPES_SCANNED)
    latest: dict[str, Any] = {}
    for row in recent:  # newest first: the first seen of each scope is its latest
        latest.setdefault(row.scope, row)
    rows = store.drift_reports(limit=COLUMNS, scope=scope)[::-1]  # oldest first, left to right
    reports = [r.report for r in rows]
    _, _, estimates = performance_now(store, console.settings.training.performance, now=now)
    return render(request, console, "drift.html", session, scope=scope, scopes=sorted(latest.values(),
                  key=lambda r: (r.verdict != "drift", r.scope)), times=[r.ts for r in rows], heat=heat_rows(reports),
                  words=drift_words(reports[-1]) if reports else None, estimates=estimates)
