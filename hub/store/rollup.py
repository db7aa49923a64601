"""Stats histograms in a compact form, and their hourly roll-ups: what makes a day of a fleet's drift cheap to read.

Each stored stats row keeps its JSON histograms (what `stats_between` returns) and also its counts as one
little-endian integer array (feature bins flattened, then the score bins; int32 when every count fits, else
int64) with their `layout` (``"10,10,…;11"``: each feature's bin count, then the score's). Every new row is
also added, in the same transaction, to its device's roll-up of that hour (``stats_hourly``: one row per device,
model version, layout and hour of period end, int64 sums). `window_sums` reads a window as the roll-ups of the
hours it covers whole and the raw rows at its two ragged ends, so a 24 h drift run over 10,000 devices reads
~250,000 roll-ups and the raw rows of at most two partial hours, never 14 million JSON rows.

Pure (no database): the stores supply the rows. Rows stored before the roll-ups existed are rolled up by the
migration; their raw counts stay JSON and are decoded here when a window's end falls among them.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hub.store.rows import StatsSum, layout_bins

HOUR_S = 3600
HOUR_LIMIT = 2**40  # hours beyond ±2**40 (125 million years) are never rolled up: their rows are read raw
INT64_MAX = 2**63 - 1
_INT32_MAX = 2**31 - 1

Key = tuple[str, str | None, str]  # device, model version, layout
HourKey = tuple[str, str | None, str, int]  # … and hour


def layout_of(feature_hist: Sequence[Sequence[int]], score_hist: Sequence[int]) -> str:
    """``"3,2;2"`` for two features of 3 and 2 bins and a score histogram of 2."""
    return f"{','.join(str(len(h)) for h in feature_hist)};{len(score_hist)}"


def layout_width(layout: str) -> int:
    bins, score = layout_bins(layout)
    return sum(bins) + score


def flat_counts(feature_hist: Sequence[Sequence[int]], score_hist: Sequence[int]) -> NDArray[np.int64]:
    width = sum(len(h) for h in feature_hist) + len(score_hist)
    return np.fromiter(itertools.chain(itertools.chain.from_iterable(feature_hist), score_hist), np.int64, width)


def counts_blob(feature_hist: Sequence[Sequence[int]], score_hist: Sequence[int]) -> bytes:
    """A row's counts as little-endian int32 (int64 when a count does not fit): its blob length says which."""
    flat = flat_counts(feature_hist, score_hist)
    return flat.astype("<i4" if flat.max(initial=0) <= _INT32_MAX else "<i8").tobytes()


def item_size(blob: bytes, width: int) -> int:
    """4 or 8: the integer width of a `counts_blob` of `width` counts."""
    return len(blob) // width if width else 8


def batch_deltas(stats_rows: Iterable[Sequence[Any]]) -> dict[HourKey, Delta]:
    """Roll-up deltas of new stats rows in `hub.store.sqlite.batch.BatchRows` form (layout and blob last)."""
    def parsed() -> Iterable[Parsed]:
        for r in stats_rows:
            layout, blob = r[18], r[19]
            width = layout_width(layout)
            counts = np.frombuffer(blob, f"<i{item_size(blob, width)}").astype(np.int64)
            yield r[1], r[4], r[6], r[7], r[8], layout, counts
    return hour_deltas(parsed())


def hour_of(period_end: float) -> int | None:
    """The hour (``period_end // 3600``, exact at the boundaries) a row is rolled up in; None: never rolled up."""
    h = math.floor(period_end / HOUR_S)
    if h * HOUR_S > period_end:
        h -= 1
    elif (h + 1) * HOUR_S <= period_end:
        h += 1
    return h if -HOUR_LIMIT <= h < HOUR_LIMIT else None


def full_hours(start: float, end: float) -> tuple[int, int]:
    """The hours ``[lo, hi)`` lying wholly in ``[start, end)`` and within ±`HOUR_LIMIT` (``lo == hi``: none)."""
    bound = float(HOUR_LIMIT * HOUR_S)
    s, e = min(max(start, -bound), bound), min(max(end, -bound), bound)
    lo = math.ceil(s / HOUR_S)
    while (lo - 1) * HOUR_S >= s:
        lo -= 1
    while lo * HOUR_S < s:
        lo += 1
    hi = math.floor(e / HOUR_S)
    while hi * HOUR_S > e:
        hi -= 1
    while (hi + 1) * HOUR_S <= e:
        hi += 1
    return (lo, hi) if lo < hi else (lo, lo)


def hours_before(cutoff: float) -> int:
    """The first hour not wholly before `cutoff`: retention drops the roll-ups of the hours below it."""
    return full_hours(float("-inf"), cutoff)[1]


@dataclass
class Delta:
    """What new rows add to one roll-up."""

    rows: int = 0
    windows: int = 0
    anomalies: int = 0
    counts: NDArray[np.int64] | None = None

    def add(self, windows: int, anomalies: int, counts: NDArray[np.int64]) -> None:
        self.rows += 1
        self.windows = min(self.windows + windows, INT64_MAX)  # SQL integers are 64 bits; sums saturate
        self.anomalies = min(self.anomalies + anomalies, INT64_MAX)
        self.counts = counts.copy() if self.counts is None else self.counts + counts

    def merged(self, rows: int, windows: int, anomalies: int, blob: bytes) -> tuple[int, int, int, bytes]:
        """This delta added to a stored roll-up: (rows, windows, anomalies, counts blob)."""
        assert self.counts is not None
        return (rows + self.rows, min(windows + self.windows, INT64_MAX), min(anomalies + self.anomalies, INT64_MAX),
                (np.frombuffer(blob, "<i8") + self.counts).astype("<i8").tobytes())

    def blob(self) -> bytes:
        assert self.counts is not None
        return self.counts.astype("<i8").tobytes()


Parsed = tuple[str, str | None, float, int, int, str, NDArray[np.int64]]  # hour_deltas' rows


def hour_deltas(rows: Iterable[Parsed]) -> dict[HourKey, Delta]:
    """(device, version, period end, windows, anomalies, layout, flat counts) rows summed per roll-up key."""
    out: dict[HourKey, Delta] = {}
    for device, version, period_end, windows, anomalies, layout, counts in rows:
        hour = hour_of(period_end)
        if hour is None:
            continue
        key = (device, version, layout, hour)
        delta = out.get(key)
        if delta is None:
            delta = out[key] = Delta()
        delta.add(windows, anomalies, counts)
    return out


def json_row_deltas(rows: Iterable[Sequence[Any]]) -> dict[HourKey, Delta]:
    """Roll-up deltas of stored rows (device, version, period end, windows, anomalies, feature JSON, score JSON):
    what a migration backfills from the rows stored before roll-ups existed."""
    def parsed() -> Iterable[Parsed]:
        for device, version, period_end, windows, anomalies, feature_json, score_json in rows:
            feature, score = json.loads(feature_json), json.loads(score_json)
            layout, counts = layout_of(feature, score), flat_counts(feature, score)
            yield device, version, period_end, windows, anomalies, layout, counts
    return hour_deltas(parsed())


def sort_key(key: HourKey) -> tuple[str, bool, str, str, int]:
    """One order every writer takes roll-up keys in (so concurrent writers wait for each other, never deadlock)."""
    device, version, layout, hour = key
    return device, version is None, version or "", layout, hour


@dataclass
class _Acc:
    rows: int = 0
    windows: int = 0
    anomalies: int = 0
    blobs: dict[int, list[bytes]] = field(default_factory=dict)  # item size -> blobs
    arrays: list[NDArray[np.int64]] = field(default_factory=list)


class WindowSums:
    """Roll-ups and raw rows summed per (device, version, layout); blobs are joined and summed in bulk."""

    def __init__(self) -> None:
        self._acc: dict[Key, _Acc] = {}

    def _get(self, key: Key) -> _Acc:
        acc = self._acc.get(key)
        if acc is None:
            acc = self._acc[key] = _Acc()
        return acc

    def add_hourly(self, rows: Iterable[Sequence[Any]]) -> None:
        """Roll-up rows: (device, version, layout, rows, windows, anomalies, int64 counts blob)."""
        for device, version, layout, n, windows, anomalies, blob in rows:
            acc = self._acc.get((device, version, layout)) or self._get((device, version, layout))
            acc.rows += n
            acc.windows += windows
            acc.anomalies += anomalies
            acc.blobs.setdefault(8, []).append(blob)

    def add_raw(self, rows: Iterable[Sequence[Any]]) -> None:
        """Raw stats rows: (device, version, windows, anomalies, layout, counts blob, feature JSON, score JSON); the
        JSON only where the blob is NULL (a row stored before blobs existed)."""
        widths: dict[str, int] = {}
        for device, version, windows, anomalies, layout, blob, feature_json, score_json in rows:
            if blob is None:
                feature, score = json.loads(feature_json), json.loads(score_json)
                acc = self._get((device, version, layout_of(feature, score)))
                acc.arrays.append(flat_counts(feature, score))
            else:
                acc = self._acc.get((device, version, layout)) or self._get((device, version, layout))
                width = widths.get(layout)
                if width is None:
                    width = widths[layout] = layout_width(layout)
                acc.blobs.setdefault(item_size(blob, width), []).append(blob)
            acc.rows += 1
            acc.windows += windows
            acc.anomalies += anomalies

    def result(self) -> list[StatsSum]:
        out = []
        for (device, version, layout), acc in sorted(self._acc.items(), key=lambda kv: (kv[0][0], kv[0][1] is None,
                                                                                          kv[0][1] or "", kv[0][2])):
            width = layout_width(layout)
            total = np.zeros(width, np.int64)
            for size, blobs in acc.blobs.items():
                joined = np.frombuffer(b"".join(map(bytes, blobs)), f"<i{size}")
                total += joined.reshape(-1, width).sum(axis=0, dtype=np.int64)
            for arr in acc.arrays:
                total += arr
            out.append(StatsSum(device, version, layout, acc.rows, acc.windows, acc.anomalies, total))
        return out


_RAW_SQL = ("SELECT device_id, model_version, windows, anomalies, layout, counts, "
            "CASE WHEN counts IS NULL THEN feature_hist END, CASE WHEN counts IS NULL THEN score_hist END "
            "FROM stats WHERE period_end >= ? AND period_end < ?")
_HOURLY_SQL = ("SELECT device_id, model_version, layout, rows, windows, anomalies, counts "
               "FROM stats_hourly WHERE hour >= ? AND hour < ?")


def read_sums(read: Callable[[str, list[Any]], Iterable[Sequence[Any]]], mark: str, start: float,
              end: float) -> list[StatsSum]:
    """`window_sums` through a store's `_read` (`mark`: its parameter placeholder)."""
    return window_sums(start, end, lambda a, b: read(_RAW_SQL.replace("?", mark), [a, b]),
                       lambda lo, hi: read(_HOURLY_SQL.replace("?", mark), [lo, hi]))


def window_sums(start: float, end: float, raw: Callable[[float, float], Iterable[Sequence[Any]]],
                hourly: Callable[[int, int], Iterable[Sequence[Any]]]) -> list[StatsSum]:
    """Stats whose period ends in ``[start, end)`` summed per device, version and layout: roll-ups of the whole
    hours, `raw` rows of the ends (`WindowSums` says what each callable yields)."""
    sums = WindowSums()
    if not end > start:
        return []
    lo, hi = full_hours(start, end)
    if lo < hi:
        sums.add_hourly(hourly(lo, hi))
        for a, b in ((start, float(lo * HOUR_S)), (float(hi * HOUR_S), end)):
            if a < b:
                sums.add_raw(raw(a, b))
    else:
        sums.add_raw(raw(start, end))
    return sums.result()


__all__ = [
    "HOUR_S",
    "Delta",
    "WindowSums",
    "batch_deltas",
    "counts_blob",
    "flat_counts",
    "full_hours",
    "hour_deltas",
    "hour_of",
    "hours_before",
    "json_row_deltas",
    "layout_of",
    "read_sums",
    "sort_key",
    "window_sums",
]
