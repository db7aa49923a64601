"""One device: its score timeline with the threshold and alarms (SVG drawn here), its incidents and labels, the
model history on the device, and its drift against its baseline."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from hub.api.deps import NowDep, StoreDep
from hub.console.charts import score_timeline
from hub.console.deps import ConsoleDep, ConsoleError, Viewer, render
from hub.console.words import drift_words
from hub.store.rows import IncidentQuery, IncidentState

router = APIRouter()

POINTS = 3000
SHOWN = 100
LISTED: tuple[IncidentState, ...] = ("open", "acknowledged", "closed", "resolved")


@router.get("/devices/{device_id}")
def device_page(request: Request, device_id: Annotated[str, Path(min_length=1, max_length=64)], session: Viewer,
                console: ConsoleDep, store: StoreDep, now: NowDep,
                hours: Annotated[float, Query(gt=0, le=24 * 30)] = 1.0) -> HTMLResponse:
    device = store.device(device_id)
    if device is None:
        raise ConsoleError(404, f"device {device_id} is not known to the hub")
    # the timeline ends at the device's newest message (its clock), so a device with a skewed clock still shows
    end = (device.last_ts or now) + 1
    predictions = store.predictions(end - hours * 3600, end, device_ids=[device_id])[-POINTS:]
    threshold = predictions[-1].threshold if predictions else None
    chart = score_timeline([(p.ts, p.score, p.decision) for p in predictions], threshold)
    drift = store.drift_reports(limit=1, scope=f"device:{device_id}")
    return render(request, console, "device.html", session, d=device, now=now, hours=hours,
                  chart=Markup(chart),  # safe: numbers and fixed strings only (hub.console.charts)
                  alarms=sum(p.decision for p in predictions), predictions=len(predictions),
                  incidents=store.incidents(IncidentQuery(device_id=device_id, states=LISTED, limit=SHOWN)),
                  labels=store.annotations(device_id=device_id)[-SHOWN:][::-1],
                  model_events=store.model_events(device_id=device_id)[-SHOWN:][::-1],
                  drift=drift[0] if drift else None, drift_words=drift_words(drift[0].report) if drift else None)
