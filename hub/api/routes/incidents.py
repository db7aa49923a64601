"""``/incidents``: a device's alarm windows grouped into incidents; technicians acknowledge and resolve them (the
verdict becomes labels of each alarm window) and report failures no alarm covered. Everyone with a token reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query, status

from hub.api.deps import AUTH_RESPONSES, IncidentsDep, NowDep, Reader, StoreDep, Technician, error
from hub.api.schemas.incidents import (
    AcknowledgeBody,
    BatchItem,
    BatchResolveBody,
    IncidentDetail,
    IncidentEventPublic,
    IncidentPublic,
    MissedFailureCreate,
    NotificationPublic,
    ResolveBody,
    WindowPublic,
)
from hub.errors import IncidentInputError, IncidentNotFound, IncidentStateError
from hub.store.rows import IncidentQuery, IncidentRow, IncidentState

router = APIRouter(prefix="/incidents", tags=["incidents"], responses=AUTH_RESPONSES)

IncidentId = Annotated[str, Path(min_length=1, max_length=64)]
LISTED: tuple[IncidentState, ...] = ("open", "acknowledged", "closed", "resolved")
"""What the list shows unless asked: pending groups (below min_windows) and dropped blips are left out."""
WINDOWS_SHOWN = 1000
T = TypeVar("T")


def _translate(call: Callable[[], T]) -> T:
    """The one place incident errors become HTTP: unknown → 404, wrong state → 409, bad verdict or range → 400."""
    try:
        return call()
    except IncidentNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except IncidentStateError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except IncidentInputError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None


@router.get("", summary="List incidents (newest first)")
def list_incidents(
    _: Reader,
    store: StoreDep,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
    site: Annotated[str | None, Query(max_length=64)] = None,
    state: Annotated[list[IncidentState] | None, Query(description="repeatable; default: open, acknowledged, "
                                                       "closed, resolved")] = None,
    since: Annotated[float | None, Query(allow_inf_nan=False, description="last alarm window at or after")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="skip this many (paging)")] = 0,
) -> list[IncidentPublic]:
    """Incidents by newest first alarm window; page on with ``offset`` += ``limit``."""
    query = IncidentQuery(device_id=device_id, site=site, states=tuple(state or LISTED), since=since, limit=limit,
                          offset=offset)
    return [IncidentPublic.from_row(r) for r in store.incidents(query)]


def _detail(store: StoreDep, row: IncidentRow) -> IncidentDetail:
    return IncidentDetail(
        **IncidentPublic.from_row(row).model_dump(),
        window_traces=[WindowPublic.from_row(m) for m in store.incident_windows(row.id, limit=WINDOWS_SHOWN)],
        events=[IncidentEventPublic.from_row(e) for e in store.incident_events(row.id)],
        notifications=[NotificationPublic.from_row(n) for n in store.notifications(incident_id=row.id)],
    )


@router.get("/{incident_id}", summary="One incident with its alarm windows, history and notifications",
            responses=error(404, "No incident with this id"))
def get_incident(incident_id: IncidentId, _: Reader, store: StoreDep, incidents: IncidentsDep) -> IncidentDetail:
    return _detail(store, _translate(lambda: incidents.get(incident_id)))


@router.post("/{incident_id}/acknowledge", summary="Take an open incident",
             responses={**error(400, "The body is not JSON"), **error(404, "No incident with this id"),
                        **error(409, "The incident is not open")})
def acknowledge(incident_id: IncidentId, body: AcknowledgeBody, _: Technician, incidents: IncidentsDep,
                now: NowDep) -> IncidentPublic:
    return IncidentPublic.from_row(_translate(lambda: incidents.acknowledge(incident_id, who=body.technician_id,
                                                                            now=now)))


@router.post("/{incident_id}/resolve", summary="Resolve an incident with a verdict (labels its alarm windows)",
             responses={**error(400, "The verdict does not fit, or the body is not JSON"),
                        **error(404, "No incident with this id"),
                        **error(409, "The incident is pending, dropped or resolved already")})
def resolve(incident_id: IncidentId, body: ResolveBody, _: Technician, incidents: IncidentsDep,
            now: NowDep) -> IncidentPublic:
    """The verdict (confirmed_fault with a fault_type, false_alarm, no_fault_found) becomes one annotation per
    alarm window, by trace id and with the technician's id, stored as ``POST /annotations`` stores them."""
    return IncidentPublic.from_row(_translate(lambda: incidents.resolve(
        incident_id, verdict=body.verdict, who=body.technician_id, now=now, fault_type=body.fault_type,
        note=body.note)))


@router.post("/resolve", summary="Resolve several incidents with one verdict",
             responses=error(400, "The verdict does not fit, or the body is not JSON"))
def resolve_batch(body: BatchResolveBody, _: Technician, incidents: IncidentsDep, now: NowDep) -> list[BatchItem]:
    """Each incident is resolved on its own: one that cannot be (unknown, not resolvable) is reported with its
    status and reason, and the others still are."""
    outcomes = _translate(lambda: incidents.resolve_many(body.incident_ids, verdict=body.verdict,
                                                         who=body.technician_id, now=now, fault_type=body.fault_type,
                                                         note=body.note))
    return [BatchItem(incident_id=o.incident_id, status=o.status, detail=o.error,
                      incident=IncidentPublic.from_row(o.incident) if o.incident else None) for o in outcomes]


@router.post("/missed", status_code=status.HTTP_201_CREATED, summary="Report a failure no alarm covered",
             responses={**error(400, "The range does not fit, or the body is not JSON"),
                        **error(404, "The device is not known to the hub"),
                        **error(409, "Alarm windows fall in the range: resolve their incident instead")})
def report_missed(body: MissedFailureCreate, _: Technician, incidents: IncidentsDep, now: NowDep) -> IncidentPublic:
    """A resolved ``missed_failure`` incident and a fault annotation over the device's range (the most valuable
    label: a false negative of the model)."""
    return IncidentPublic.from_row(_translate(lambda: incidents.report_missed(
        body.device_id, start_ts=body.start_ts, end_ts=body.end_ts, who=body.technician_id, now=now,
        fault_type=body.fault_type, note=body.note)))
