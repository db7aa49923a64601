"""The debounce: which alarm windows of a device join which incident. Pure.

A window joins an active incident of its device (pending, open or acknowledged) when its time lies within
`gap_s` of the incident's span ``[start_ts - gap_s, end_ts + gap_s]`` (device clock, so a backlog replayed
after an outage groups as it happened); otherwise it starts a new (pending) incident. Windows are taken in time
order, so a burst of 94 alarms in a minute becomes one incident. Two incidents that a late window would bridge
are not merged: the window joins the one that ends last (an incident's identity, once notified, is kept).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from hub.store.rows import ACTIVE_STATES, IncidentMember, IncidentRow


@dataclass(frozen=True, slots=True)
class AlarmWindow:
    """An anomaly as grouping sees it."""

    trace_id: str
    device_id: str
    ts: float
    score: float
    model_version: str | None = None


@dataclass(frozen=True)
class Grouped:
    """The incidents a batch of windows touched (new ones at revision 0 and ``created_ts == now``) and the
    windows' memberships."""

    incidents: tuple[IncidentRow, ...]
    members: tuple[IncidentMember, ...]


def group_windows(
    windows: Iterable[AlarmWindow],
    active: Sequence[IncidentRow],
    *,
    gap_s: float,
    now: float,
    new_id: Callable[[], str],
    sites: Callable[[str], str | None] = lambda device_id: None,
) -> Grouped:
    """Fold `windows` into the `active` incidents (of any devices) or new ones; see the module docstring.

    >>> ids = iter(["i1", "i2"])
    >>> w = [AlarmWindow(f"t{i}", "d", ts, 0.9) for i, ts in enumerate([100.0, 130.0, 160.0, 900.0])]
    >>> g = group_windows(w, [], gap_s=60.0, now=1000.0, new_id=lambda: next(ids))
    >>> [(i.id, i.start_ts, i.end_ts, i.windows) for i in g.incidents]
    [('i1', 100.0, 160.0, 3), ('i2', 900.0, 900.0, 1)]
    """
    if gap_s <= 0:
        raise ValueError("gap_s must be > 0")
    touched: dict[str, IncidentRow] = {}
    by_device: dict[str, list[IncidentRow]] = {}
    for row in active:
        if row.state in ACTIVE_STATES:
            by_device.setdefault(row.device_id, []).append(row)
    members: list[IncidentMember] = []
    for w in sorted(windows, key=lambda w: (w.device_id, w.ts, w.trace_id)):
        rows = by_device.setdefault(w.device_id, [])
        near = [r for r in rows if r.start_ts - gap_s <= w.ts <= r.end_ts + gap_s]
        if near:
            row = max(near, key=lambda r: (r.end_ts, r.created_ts, r.id))
            new = dataclasses.replace(
                row, start_ts=min(row.start_ts, w.ts), end_ts=max(row.end_ts, w.ts), windows=row.windows + 1,
                max_score=max(row.max_score, w.score),
                model_version=w.model_version if w.ts >= row.end_ts else row.model_version, updated_ts=now,
            )
            rows[rows.index(row)] = new
        else:
            new = IncidentRow(
                id=new_id(), device_id=w.device_id, site=sites(w.device_id), kind="alarm", state="pending",
                start_ts=w.ts, end_ts=w.ts, windows=1, max_score=w.score, model_version=w.model_version,
                created_ts=now, updated_ts=now,
            )
            rows.append(new)
        touched[new.id] = new
        members.append(IncidentMember(w.trace_id, new.id, w.ts, w.score))
    return Grouped(tuple(touched.values()), tuple(members))
