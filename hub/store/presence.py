"""Which status message wins: the presence ordering rule, as a pure function.

Statuses are ordered by the device's `ts`, so a delayed or redelivered status never overwrites a newer
one. One exception: the agent sets its last will (``offline``) when it connects, so the will carries an
*older* ts than the ``online`` status that follows it; the broker publishes the will only when the
connection dies. An ``offline`` therefore also wins over an ``online`` that the hub received before it.
Comparing hub receive times (not write order) keeps this right when several workers race.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Presence:
    """What the registry holds for a device's presence."""

    online: bool
    status_ts: float  # device clock of the newest status applied
    received_at: float  # hub clock when the applied status arrived


def status_applies(stored: Presence | None, *, online: bool, ts: float, received_at: float) -> bool:
    """Whether a status (``online`` or not, sent at `ts`, received at `received_at`) replaces `stored`.

    >>> held = Presence(online=True, status_ts=100.0, received_at=1000.0)
    >>> status_applies(held, online=True, ts=90.0, received_at=1001.0)   # a delayed older online
    False
    >>> status_applies(held, online=False, ts=90.0, received_at=1001.0)  # the will of this session
    True
    >>> status_applies(held, online=False, ts=90.0, received_at=999.0)   # received before: stale
    False
    >>> status_applies(held, online=True, ts=100.0, received_at=1002.0)  # a redelivery
    False
    """
    if stored is None or ts > stored.status_ts:
        return True
    return stored.online and not online and received_at > stored.received_at


def applied(stored: Presence | None, *, online: bool, ts: float, received_at: float) -> Presence:
    """The presence after applying a status that `status_applies`: the status ts never goes back."""
    status_ts = ts if stored is None else max(ts, stored.status_ts)
    return Presence(online=online, status_ts=status_ts, received_at=received_at)
