"""Rows of per-device sequence tracking: the holes below a device's highest sequence number."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SequenceHole:
    """Sequence numbers ``lo..hi`` (inclusive) of a device the hub has not received, though it has later ones.

    `reported`: when it was reported as a gap (None while within the grace period); `requests`: how many
    times the device was asked to resend them.
    """

    id: int
    device_id: str
    lo: int
    hi: int
    detected: float
    reported: float | None
    requests: int
    last_request: float | None

    @property
    def missing(self) -> int:
        return self.hi - self.lo + 1


@dataclass(frozen=True, slots=True)
class SequenceUpdate:
    """What tracking one batch's sequence numbers did: holes opened, seqs that filled a hole, reported holes
    (gaps) that are now completely filled."""

    opened: int = 0
    filled: int = 0
    gaps_closed: int = 0
