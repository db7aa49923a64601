"""Pure helpers of end-to-end delivery: sequence numbers into ranges, and which holes are due for what."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hub.store.rows import SequenceHole

MAX_RANGES_PER_COMMAND = 1000  # shared.messages.Command allows 10,000; a command stays well under 64 kB


def to_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, merged inclusive ranges of `seqs`.

    >>> to_ranges([5, 1, 2, 3, 7, 8, 3])
    [(1, 3), (5, 5), (7, 8)]
    """
    out: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


def chunks(ranges: Sequence[tuple[int, int]], size: int = MAX_RANGES_PER_COMMAND) -> list[list[tuple[int, int]]]:
    """`ranges` in lists of at most `size` (one command each)."""
    return [list(ranges[i : i + size]) for i in range(0, len(ranges), size)]


def due_reports(holes: Iterable[SequenceHole], *, now: float, grace_s: float) -> list[SequenceHole]:
    """Unreported holes older than `grace_s`: gaps. Younger ones are usually reordering (several ingest
    workers, batches committing out of order) and fill on their own.

    >>> h = SequenceHole(1, "d", 4, 6, detected=100.0, reported=None, requests=0, last_request=None)
    >>> due_reports([h], now=105.0, grace_s=10.0), [x.id for x in due_reports([h], now=111.0, grace_s=10.0)]
    ([], [1])
    """
    return [h for h in holes if h.reported is None and now - h.detected >= grace_s]


def due_requests(holes: Iterable[SequenceHole], *, now: float, retry_s: float, max_requests: int) -> list[SequenceHole]:
    """Reported holes to ask the device for (again): never asked, or asked `retry_s` ago, at most `max_requests`
    times (a device that no longer holds the messages cannot fill the gap; it stays recorded)."""
    return [
        h for h in holes
        if h.reported is not None and h.requests < max_requests
        and (h.last_request is None or now - h.last_request >= retry_s)
    ]
