"""Per-device token buckets: how many messages a device may send, on average and in a burst. Pure; time passed in.

Ingest (`hub.mqtt.ingest`) asks `DeviceRateLimiter.allow(device, now)` for every message from a device topic. A
message over the limit is acknowledged and dropped, counted per device; only the first of each episode
(the bucket going from allowing to refusing) is dead-lettered with reason ``rate_limited``, so a flood does
not become a flood of dead letters. Why drop rather than hold: an unacknowledged message occupies the hub
session's in-flight window (shared by every device), so holding a flooder's messages would stall the fleet.

Each device has two lanes with a bucket each (`rate_lane`): its few control messages (status, stats, model events)
are never starved by a burst of its bulk ones (anomalies, samples, annotations), so a rollout's evidence and a
swap's report arrive while the device drains a backlog; a flood of either kind is limited all the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.topics import Kind

CONTROL_KINDS = frozenset({Kind.STATUS, Kind.STATS, Kind.MODEL_EVENT})


def rate_lane(kind: Kind) -> str:
    """The bucket a message kind draws from: ``control`` (status, stats, model events) or ``bulk``.

    >>> rate_lane(Kind.MODEL_EVENT), rate_lane(Kind.SAMPLE)
    ('control', 'bulk')
    """
    return "control" if kind in CONTROL_KINDS else "bulk"


@dataclass(slots=True)
class Bucket:
    """One device's tokens at `updated` (hub clock), and whether its last message was refused."""

    tokens: float
    updated: float
    limited: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """`allowed`, or refused; `first` marks the first refusal of an episode (the one that is dead-lettered)."""

    allowed: bool
    first: bool = False


class DeviceRateLimiter:
    """A token bucket per device: `rate_per_s` tokens a second up to `burst`; a message costs one token.

    ``rate_per_s == 0`` turns the limit off.

    >>> limiter = DeviceRateLimiter(rate_per_s=1.0, burst=2)
    >>> [limiter.allow("d", 0.0).allowed for _ in range(3)]
    [True, True, False]
    >>> limiter.allow("d", 0.0), limiter.allow("d", 1.0).allowed, limiter.allow("other", 0.0).allowed
    (Verdict(allowed=False, first=False), True, True)
    """

    def __init__(self, *, rate_per_s: float, burst: int) -> None:
        if rate_per_s < 0 or burst < 1:
            raise ValueError("rate_per_s must be ≥ 0 and burst ≥ 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets: dict[str, Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def allow(self, device_id: str, now: float) -> Verdict:
        """Take a token for one message of `device_id` at `now`, if there is one."""
        if not self.enabled:
            return Verdict(True)
        b = self._buckets.get(device_id)
        if b is None:
            b = self._buckets[device_id] = Bucket(float(self.burst), now)
        b.tokens = min(float(self.burst), b.tokens + max(0.0, now - b.updated) * self.rate_per_s)
        b.updated = max(b.updated, now)
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            b.limited = False
            return Verdict(True)
        first, b.limited = not b.limited, True
        return Verdict(False, first)
