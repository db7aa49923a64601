"""The labeling queue: what the model most needs labelled (alarms, low-confidence windows, a random slice), with
the same readable trace and one-click labels stored exactly as ``POST /annotations`` stores them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from hub.api.deps import LabelSettingsDep, NowDep, ServicesDep, StoreDep
from hub.console.deps import PREFIX, ConsoleDep, ConsoleError, Form, Technician, field, render, see_other
from hub.console.pages.incidents import FAULT_TYPES
from hub.console.trace import readable_trace
from hub.labels.service import labeling_queue
from hub.store.rows import IngestRecord
from shared.messages import Annotation, Label

router = APIRouter()

SHOWN = 50
LABELS: dict[str, Label] = {"fault": "fault", "no_fault": "no_fault"}
TraceId = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("/queue")
def queue_page(request: Request, session: Technician, console: ConsoleDep, services: ServicesDep,
               labels: LabelSettingsDep, now: NowDep) -> HTMLResponse:
    entries = labeling_queue(services.store, labels, now=now, limit=SHOWN)
    first = readable_trace(services, entries[0].prediction.trace_id) if entries else None
    return render(request, console, "queue.html", session, entries=entries, trace=first, fault_types=FAULT_TYPES)


@router.post("/queue/{trace_id}")
def label(trace_id: TraceId, session: Technician, form: Form, store: StoreDep, now: NowDep) -> RedirectResponse:
    """One click: ``fault`` (with its type) or ``no_fault`` on a trace the hub holds, by the signed-in person."""
    prediction = store.prediction(trace_id)
    if prediction is None:
        raise ConsoleError(404, f"the hub has no prediction of trace {trace_id}")
    value = LABELS.get(field(form, "label", max_len=16) or "")
    if value is None:
        raise ConsoleError(400, "choose fault or no fault")
    fault_type = field(form, "fault_type", max_len=64) if value == "fault" else None
    if value == "fault" and not fault_type:
        raise ConsoleError(400, "a fault needs a fault type")
    message = Annotation(device_id=prediction.device_id, ts=now, trace_id=trace_id, label=value,
                         fault_type=fault_type, technician_id=session.who, model_version=prediction.model_version)
    store.ingest_batch([IngestRecord(message, received_at=now)])
    return see_other(f"{PREFIX}/queue")
