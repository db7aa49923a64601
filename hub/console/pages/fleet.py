"""The fleet: devices with presence, model version, anomaly rate, p99 latency, errors, last seen; the version
distribution; open incidents; filters by site and asset type."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from hub.api.deps import NowDep, StoreDep
from hub.console.deps import ConsoleDep, Viewer, render
from hub.store.rows import Device, FleetQuery, StageStatsRow

router = APIRouter()

RATE_WINDOW_S = 3600.0
"""The anomaly rate, latency and errors are of the stats the hub received in the last hour."""
PAGE_SIZE = 200
"""Devices a page lists (the counts and the version distribution cover the whole filtered fleet): the stats of a
page's devices are read, never the whole fleet's."""


@dataclass(frozen=True)
class DeviceLine:
    device: Device
    windows: int
    anomaly_rate: float | None
    latency_p99_ms: float | None
    errors: int
    open_incidents: int


def _lines(devices: list[Device], stats: list[StageStatsRow], open_by_device: Counter[str]) -> list[DeviceLine]:
    windows: Counter[str] = Counter()
    anomalies: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    p99: dict[str, float] = {}
    for s in stats:
        windows[s.device_id] += s.windows
        anomalies[s.device_id] += s.anomalies
        errors[s.device_id] += s.inference_errors + s.nan_scores
        if s.latency_p99_ms is not None:
            p99[s.device_id] = max(p99.get(s.device_id, 0.0), s.latency_p99_ms)
    return [DeviceLine(d, windows[d.device_id],
                       anomalies[d.device_id] / windows[d.device_id] if windows[d.device_id] else None,
                       p99.get(d.device_id), errors[d.device_id], open_by_device[d.device_id]) for d in devices]


@router.get("/fleet")
def fleet(request: Request, session: Viewer, console: ConsoleDep, store: StoreDep, now: NowDep,
          site: Annotated[str | None, Query(max_length=64)] = None,
          asset_type: Annotated[str | None, Query(max_length=64)] = None,
          page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> HTMLResponse:
    found = store.fleet(FleetQuery(site=site or None, asset_type=asset_type or None, limit=PAGE_SIZE,
                                   offset=(page - 1) * PAGE_SIZE))
    ids = [d.device_id for d in found.devices]
    stats = store.stage_stats(period_end_since=0.0, received_since=now - RATE_WINDOW_S, device_ids=ids) if ids else []
    return render(request, console, "fleet.html", session, now=now, page=page,
                  lines=_lines(found.devices, stats, Counter(found.open_incidents)),
                  pages=max(1, -(-found.total // PAGE_SIZE)),
                  versions=[(v or "none", n) for v, n in found.versions], total=found.total, online=found.online,
                  open_incidents=found.open_total, site=site, asset_type=asset_type, sites=found.sites,
                  asset_types=found.asset_types)
