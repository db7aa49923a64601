"""Which status message wins: the presence ordering rule, as a pure function.

Statuses are ordered by the device's `ts`, so a delayed or redelivered status never overwrites a newer
one. One exception: the agent sets its last will (``offline``) when it connects, so the will carries an
*older* ts than the ``online`` status that follows it; the broker publishes the will only when the
connection dies. An ``offline`` therefore also wins over an ``online`` that the hub received before it.
Comparing hub receive times (not write order) keeps this right when several workers race.

A held status whose ts lies more than `MAX_AHEAD_S` after the new status's receive time is implausible (a
device clock far in the future, written before ingest started refusing such timestamps): it no longer blocks
newer statuses, which would otherwise freeze the device's registry entry for good.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_AHEAD_S = 3600.0
"""A held status ts this far ahead of the hub's receive time is implausible and yields (see the module doc)."""


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
    >>> status_applies(Presence(True, 9e9, 1000.0), online=True, ts=1003.0, received_at=1003.0)  # held is implausible
    True
    """
    if stored is not None and not plausible(stored, received_at):
        return True
    if stored is None or ts > stored.status_ts:
        return True
    return stored.online and not online and received_at > stored.received_at


def applied(stored: Presence | None, *, online: bool, ts: float, received_at: float) -> Presence:
    """The presence after applying a status that `status_applies`: the status ts never goes back."""
    status_ts = ts if stored is None or not plausible(stored, received_at) else max(ts, stored.status_ts)
    return Presence(online=online, status_ts=status_ts, received_at=received_at)


def plausible(stored: Presence, received_at: float) -> bool:
    """Whether a held status's ts is believable at hub time `received_at` (not more than `MAX_AHEAD_S` ahead)."""
    return stored.status_ts <= received_at + MAX_AHEAD_S
