"""A technician asks a trace's device for its raw sensor window (what ``POST /traces/{trace_id}/window`` does)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import RedirectResponse

from hub.api.deps import ServicesDep
from hub.console.deps import PREFIX, ConsoleError, Form, Technician, field, see_other
from hub.console.trace import request_window

router = APIRouter()


@router.post("/traces/{trace_id}/window")
def ask_for_window(trace_id: Annotated[str, Path(min_length=1, max_length=64)], _: Technician, form: Form,
                   services: ServicesDep) -> RedirectResponse:
    """Ask the device, then back to the page the button was on (a console page only)."""
    prediction = services.store.prediction(trace_id)
    if prediction is None:
        raise ConsoleError(404, f"the hub has no prediction of trace {trace_id}")
    if request_window(services, prediction) is None:
        raise ConsoleError(503, "this hub process cannot reach devices")
    back = field(form, "back", max_len=500) or ""
    return see_other(back if back.startswith(f"{PREFIX}/") and "//" not in back else f"{PREFIX}/incidents")
