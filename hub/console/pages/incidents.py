"""The incidents inbox (the technician's home): open incidents by severity and age, one incident with its
readable trace, acknowledge, resolve with one click, batch resolve."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from hub.api.deps import IncidentsDep, NowDep, ServicesDep, StoreDep
from hub.console.deps import PREFIX, ConsoleDep, ConsoleError, Form, Technician, Viewer, field, render, see_other
from hub.console.trace import readable_trace
from hub.console.words import severity, severity_rank
from hub.errors import IncidentInputError, IncidentNotFound, IncidentStateError
from hub.incidents.verdicts import Verdict
from hub.store.rows import FleetQuery, IncidentQuery, IncidentRow, IncidentState

router = APIRouter()

INBOX: tuple[IncidentState, ...] = ("open", "acknowledged")
SHOWN = 500
WINDOWS_SHOWN = 200
VERDICTS: tuple[Verdict, ...] = ("confirmed_fault", "false_alarm", "no_fault_found")
FAULT_TYPES = ("bearing", "imbalance", "misalignment", "cavitation", "electrical", "lubrication", "other")
IncidentId = Annotated[str, Path(min_length=1, max_length=64)]
Site = Annotated[str | None, Query(max_length=64)]
T = TypeVar("T")


def _translate(call: Callable[[], T]) -> T:
    """Incident errors as pages: unknown → 404, wrong state → 409, a verdict that does not fit → 400."""
    try:
        return call()
    except IncidentNotFound as exc:
        raise ConsoleError(404, str(exc)) from None
    except IncidentStateError as exc:
        raise ConsoleError(409, str(exc)) from None
    except IncidentInputError as exc:
        raise ConsoleError(400, str(exc)) from None


def _inbox_order(rows: list[IncidentRow]) -> list[tuple[IncidentRow, str]]:
    """Most severe first, then oldest first (the one waiting longest)."""
    rated = [(r, severity(r.max_score, r.windows)) for r in rows]
    return sorted(rated, key=lambda pair: (severity_rank(pair[1]), pair[0].start_ts))


@router.get("/incidents")
def inbox(request: Request, session: Viewer, console: ConsoleDep, store: StoreDep, now: NowDep,
          site: Site = None, done: Annotated[bool, Query(description="show resolved and closed ones")] = False,
          ) -> HTMLResponse:
    states: tuple[IncidentState, ...] = ("resolved", "closed") if done else INBOX
    rows = store.incidents(IncidentQuery(site=site or None, states=states, limit=SHOWN))
    sites = store.fleet(FleetQuery(limit=0)).sites
    return render(request, console, "incidents.html", session, incidents=_inbox_order(rows), now=now, site=site,
                  sites=sites, done=done, verdicts=VERDICTS, fault_types=FAULT_TYPES)


@router.get("/incidents/{incident_id}")
def incident_page(request: Request, incident_id: IncidentId, session: Viewer, console: ConsoleDep,
                  services: ServicesDep, incidents: IncidentsDep, now: NowDep,
                  trace: Annotated[str | None, Query(max_length=64)] = None) -> HTMLResponse:
    row = _translate(lambda: incidents.get(incident_id))
    store = services.store
    windows = store.incident_windows(row.id, limit=WINDOWS_SHOWN)
    shown = trace if trace is not None else (max(windows, key=lambda w: w.score).trace_id if windows else None)
    return render(request, console, "incident.html", session, incident=row, level=severity(row.max_score, row.windows),
                  windows=windows, events=store.incident_events(row.id), now=now,
                  trace=None if shown is None else readable_trace(services, shown),
                  verdicts=VERDICTS, fault_types=FAULT_TYPES)


@router.post("/incidents/{incident_id}/acknowledge")
def acknowledge(incident_id: IncidentId, session: Technician, _: Form, incidents: IncidentsDep,
                now: NowDep) -> RedirectResponse:
    _translate(lambda: incidents.acknowledge(incident_id, who=session.who, now=now))
    return see_other(f"{PREFIX}/incidents/{incident_id}")


def _verdict(form: Form) -> tuple[str, str | None, str | None]:
    verdict = field(form, "verdict", max_len=32)
    if verdict not in VERDICTS:
        raise ConsoleError(400, f"choose a verdict: {', '.join(VERDICTS)}")
    fault_type = field(form, "fault_type", max_len=64) if verdict == "confirmed_fault" else None
    return verdict, fault_type, field(form, "note", max_len=2000)


@router.post("/incidents/{incident_id}/resolve")
def resolve(incident_id: IncidentId, session: Technician, form: Form, incidents: IncidentsDep,
            now: NowDep) -> RedirectResponse:
    """One click: the verdict (and fault type) of the button pressed becomes the labels of every alarm window."""
    verdict, fault_type, note = _verdict(form)
    _translate(lambda: incidents.resolve(incident_id, verdict=verdict, who=session.who, now=now,
                                         fault_type=fault_type, note=note))
    return see_other(f"{PREFIX}/incidents/{incident_id}")


@router.post("/incidents/resolve")
def resolve_batch(session: Technician, form: Form, incidents: IncidentsDep, now: NowDep) -> RedirectResponse:
    """The ticked incidents with one verdict; those that cannot be resolved are left as they are."""
    ids = [v for v in form.getlist("incident_id") if isinstance(v, str) and 0 < len(v) <= 64][:SHOWN]
    if not ids:
        raise ConsoleError(400, "tick at least one incident to resolve")
    verdict, fault_type, note = _verdict(form)
    _translate(lambda: incidents.resolve_many(ids, verdict=verdict, who=session.who, now=now, fault_type=fault_type,
                                              note=note))
    return see_other(f"{PREFIX}/incidents")
