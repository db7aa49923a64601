"""An incident's life: pending → open → acknowledged → resolved, or closed after quiet time. Pure; time passed in.

==============  ==============================================================================================
state           meaning
==============  ==============================================================================================
pending         fewer than `min_windows` alarm windows so far: not listed by default, nobody is told
open            enough windows: listed and notified; waiting for a technician
acknowledged    a technician (named) is on it
resolved        a technician's verdict (confirmed fault, false alarm, no fault found) is recorded as labels
closed          no new window for `quiet_s` while open or acknowledged; a technician may still resolve it
dropped         stayed below `min_windows` for `gap_s`: a blip, debounced away (kept so its windows stay grouped)
==============  ==============================================================================================

The quiet clocks compare the hub's `now` with the last window's device time: the hub refuses device times
ahead of its own beyond `max_clock_skew_s`, and a backlog replayed late opens and closes in one pass, recorded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hub.errors import IncidentStateError
from hub.store.rows import IncidentRow

RESOLVABLE = ("open", "acknowledged", "closed")


@dataclass(frozen=True)
class Rules:
    """The lifecycle's settings (`hub.incidents.settings.IncidentSettings` carries them)."""

    gap_s: float
    min_windows: int
    quiet_s: float


def advance(row: IncidentRow, *, now: float, rules: Rules) -> tuple[IncidentRow, tuple[str, ...]]:
    """What time and window counts do to an incident: the new row and the events (``opened``, ``closed``).

    >>> r = IncidentRow("i", "d", None, "alarm", "pending", 100.0, 120.0, 3, 0.9, None, 120.0, 120.0)
    >>> rules = Rules(gap_s=60.0, min_windows=3, quiet_s=600.0)
    >>> new, events = advance(r, now=130.0, rules=rules)
    >>> new.state, events
    ('open', ('opened',))
    >>> advance(new, now=721.0, rules=rules)[0].state
    'closed'
    """
    events: list[str] = []
    if row.state == "pending":
        if row.windows >= rules.min_windows:
            row = dataclasses.replace(row, state="open", opened_ts=now, updated_ts=now)
            events.append("opened")
        elif now - row.end_ts > rules.gap_s:
            return dataclasses.replace(row, state="dropped", updated_ts=now), ()
    if row.state in ("open", "acknowledged") and now - row.end_ts >= rules.quiet_s:
        row = dataclasses.replace(row, state="closed", closed_ts=now, updated_ts=now)
        events.append("closed")
    return row, tuple(events)


def acknowledge(row: IncidentRow, *, who: str, now: float) -> IncidentRow:
    """A technician takes the incident; only an open one can be acknowledged."""
    if row.state != "open":
        by = f" by {row.acknowledged_by}" if row.state == "acknowledged" else ""
        raise IncidentStateError(f"incident {row.id} is {row.state}{by}: only an open incident can be acknowledged")
    return dataclasses.replace(row, state="acknowledged", acknowledged_by=who, acknowledged_ts=now, updated_ts=now)


def resolve(row: IncidentRow, *, verdict: str, who: str, now: float, fault_type: str | None,
            note: str | None) -> IncidentRow:
    """A technician's verdict ends the incident (open, acknowledged or closed ones)."""
    if row.state not in RESOLVABLE:
        why = {"pending": "it has fewer alarm windows than incidents.min_windows yet",
               "dropped": "it was dropped as a blip", "resolved": f"it was resolved by {row.resolved_by} as "
               f"{row.verdict}"}.get(row.state, row.state)
        raise IncidentStateError(f"incident {row.id} cannot be resolved: {why}")
    return dataclasses.replace(row, state="resolved", resolved_by=who, resolved_ts=now, verdict=verdict,
                               fault_type=fault_type, note=note, updated_ts=now)
