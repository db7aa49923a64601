"""Stats histograms in a compact form, and their cumulative hourly roll-ups: what makes a day of a fleet's drift
cheap to read.

Each stored stats row keeps its JSON histograms (what `stats_between` returns) and also its counts as one
little-endian integer array (feature bins flattened, then the score bins; int32 when every count fits, else
int64) with their `layout` (``"10,10,…;11"``: each feature's bin count, then the score's). Every new row is
also added, in the same transaction, to its device's roll-ups (``stats_hourly``: one row per device, model
version, layout and hour of period end, int64 sums). A roll-up is *cumulative within its UTC day*: the row of
hour h holds the sums of every row of that device, version and layout from the day's first hour through h (a
row of hour h adds to the roll-up of h and to every later roll-up of that day; a new hour's roll-up starts from
the day's latest one before it: `cumulate`). So the sums of any run of hours are at most two roll-ups per day
(the latest in the run minus the latest before it), and `window_sums` reads a 24 h window of 10,000 devices as
~30,000 roll-ups (not 240,000 hourly ones plus ~600,000 raw rows at the ends).

A window's ragged ends are exact: the hour holding its end is read whole and the raw rows after the end
subtracted (a drift run ends at `now`: there are none); the hour holding its start is either read from the
next hour on with the raw rows before that hour added, or read whole with the raw rows before the start
subtracted, whichever span is shorter. A caller that can live with a longer window (the drift run) starts it
on an hour boundary and reads no raw rows at all.

Pure (no database): the stores supply the rows. Rows stored before the roll-ups existed are rolled up by the
migrations; their raw counts stay JSON and are decoded here when a window's end falls among them. Retention
drops roll-ups by whole UTC days (`rollup_days_before`): the day of a cutoff keeps its roll-ups whole.
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
DAY_HOURS = 24  # roll-ups are cumulative within a UTC day of this many hours
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
    """The first hour not wholly before `cutoff`."""
    return full_hours(float("-inf"), cutoff)[1]


def hour_start(ts: float) -> float:
    """The start of the hour `ts` falls in (`ts` itself beyond the hours rolled up, or not finite)."""
    hour = hour_of(ts) if math.isfinite(ts) else None
    return ts if hour is None else float(hour * HOUR_S)


def day_start(hour: int) -> int:
    """The first hour of `hour`'s UTC day."""
    return hour // DAY_HOURS * DAY_HOURS


def rollup_days_before(cutoff: float) -> int:
    """Retention drops the roll-ups of hours below this: the days lying wholly before `cutoff` (a day's roll-ups
    are cumulative, so they go a day at a time; the day holding the cutoff keeps its roll-ups whole)."""
    return day_start(hours_before(cutoff))


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


Sums = tuple[int, int, int, NDArray[np.int64]]  # rows, windows, anomalies, counts: a roll-up's values


def blob_sums(rows: int, windows: int, anomalies: int, blob: bytes) -> Sums:
    """A stored roll-up's values (its counts are an int64 blob)."""
    return rows, windows, anomalies, np.frombuffer(blob, "<i8").astype(np.int64)


def sums_blob(sums: Sums) -> tuple[int, int, int, bytes]:
    return sums[0], sums[1], sums[2], sums[3].astype("<i8").tobytes()


def cumulate(base: Sums | None, held: Sequence[tuple[int, Sums]],
             deltas: Sequence[tuple[int, Delta]]) -> list[tuple[int, Sums, bool]]:
    """One device, version and layout's roll-ups of one day after adding `deltas` (by hour, ascending): (hour,
    values, new?) for every roll-up to write. `held`: its stored roll-ups from the first delta's hour on
    (ascending); `base`: its latest one before that hour, None when it has none."""
    held_at = dict(held)
    delta_at = dict(deltas)
    before = base
    added: Sums | None = None
    out: list[tuple[int, Sums, bool]] = []
    for hour in sorted({*held_at, *delta_at}):
        d = delta_at.get(hour)
        if d is not None:
            assert d.counts is not None
            added = (d.rows, d.windows, d.anomalies, d.counts) if added is None else _plus(added, (
                d.rows, d.windows, d.anomalies, d.counts))
        old = held_at.get(hour)
        if old is not None:
            before = old
        assert added is not None  # the first hour is a delta's
        out.append((hour, added if before is None else _plus(before, added), old is None))
    return out


def _plus(a: Sums, b: Sums, sign: int = 1) -> Sums:
    return (a[0] + sign * b[0], min(a[1] + sign * b[1], INT64_MAX), min(a[2] + sign * b[2], INT64_MAX),
            a[3] + sign * b[3])


def day_groups(deltas: dict[HourKey, Delta]) -> list[tuple[Key, int, list[tuple[int, Delta]]]]:
    """Deltas grouped by device, version, layout and day: (key, the day's first hour, [(hour, delta)] ascending),
    in `sort_key` order (the order writers lock and write roll-ups in)."""
    groups: dict[tuple[Key, int], list[tuple[int, Delta]]] = {}
    for key, delta in sorted(deltas.items(), key=lambda kv: sort_key(kv[0])):
        device, version, layout, hour = key
        groups.setdefault(((device, version, layout), day_start(hour)), []).append((hour, delta))
    return [(key, day, hours) for (key, day), hours in groups.items()]


def running_sums(rows: Iterable[Sequence[Any]]) -> Iterable[tuple[Any, int, int, int, bytes]]:
    """Per-hour roll-ups made cumulative within their day: (id, device, version, layout, hour, rows, windows,
    anomalies, blob) in key then hour order in, (id, rows, windows, anomalies, blob) out (a migration's rebuild)."""
    at: tuple[Any, ...] | None = None
    total: Sums | None = None
    for row_id, device, version, layout, hour, n, windows, anomalies, blob in rows:
        here = blob_sums(n, windows, anomalies, blob)
        group = (device, version, layout, day_start(hour))
        total = here if group != at or total is None else _plus(total, here)
        at = group
        yield (row_id, *sums_blob(total))


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
    """Raw rows summed per (device, version, layout); blobs are joined and summed in bulk."""

    def __init__(self) -> None:
        self._acc: dict[Key, _Acc] = {}

    def _get(self, key: Key) -> _Acc:
        acc = self._acc.get(key)
        if acc is None:
            acc = self._acc[key] = _Acc()
        return acc

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
# Each device, version and layout's latest roll-up of each day in hours [?, ?) (days counted from the third ?, a
# day's first hour at or before the first, so the integer division is a floor): through the stats_hourly_latest
# index (hour, key) for the latest hours, then the key index for their rows.
_LATEST_SQL = (
    "SELECT h.device_id, h.model_version, h.layout, h.hour, h.rows, h.windows, h.anomalies, h.counts "
    "FROM (SELECT device_id, model_version, layout, max(hour) AS hour FROM stats_hourly WHERE hour >= ? AND hour < ? "
    "GROUP BY device_id, model_version, layout, (hour - CAST(? AS BIGINT)) / 24) m "
    "JOIN stats_hourly h ON h.device_id = m.device_id AND h.model_version IS NOT DISTINCT FROM m.model_version "
    "AND h.layout = m.layout AND h.hour = m.hour")


def read_sums(read: Callable[[str, list[Any]], Iterable[Sequence[Any]]], mark: str, start: float,
              end: float) -> list[StatsSum]:
    """`window_sums` through a store's `_read` (`mark`: its parameter placeholder)."""
    return window_sums(start, end, lambda a, b: read(_RAW_SQL.replace("?", mark), [a, b]),
                       lambda lo, hi, day: read(_LATEST_SQL.replace("?", mark), [lo, hi, day]))


def window_sums(start: float, end: float, raw: Callable[[float, float], Iterable[Sequence[Any]]],
                latest: Callable[[int, int, int], Iterable[Sequence[Any]]]) -> list[StatsSum]:
    """Stats whose period ends in ``[start, end)`` summed per device, version and layout: cumulative roll-ups of
    the hours the window touches, `raw` rows added or subtracted at its ragged ends (module docstring).

    `raw(a, b)` yields what `WindowSums.add_raw` takes; `latest(lo, hi, day)` each device, version and layout's
    latest roll-up per day in hours ``[lo, hi)`` (days counted from hour `day`): (device, version, layout, hour,
    rows, windows, anomalies, int64 counts blob)."""
    if not end > start:
        return []
    plus, minus = WindowSums(), WindowSums()
    lo, hi = full_hours(start, end)
    if lo == hi:
        plus.add_raw(raw(start, end))
        return _combined({}, plus, minus)
    h0, h1 = lo, hi
    lo_s, hi_s = float(lo * HOUR_S), float(hi * HOUR_S)
    if start < lo_s:
        before = float((lo - 1) * HOUR_S)
        if lo - 1 >= -HOUR_LIMIT and before <= start and start - before < lo_s - start:
            h0 = lo - 1  # the start's hour whole, less its rows before the start
            minus.add_raw(raw(before, start))
        else:
            plus.add_raw(raw(start, lo_s))
    if end > hi_s:
        after = float((hi + 1) * HOUR_S)
        if hi + 1 <= HOUR_LIMIT and end < after:
            h1 = hi + 1  # the end's hour whole, less its rows from the end on (none when the window ends now)
            minus.add_raw(raw(end, after))
        else:
            plus.add_raw(raw(hi_s, end))
    return _combined(_hour_sums(h0, h1, latest), plus, minus)


def _hour_sums(h0: int, h1: int, latest: Callable[[int, int, int], Iterable[Sequence[Any]]]) -> dict[Key, Sums]:
    """Sums over hours ``[h0, h1)``: each day's latest roll-up, less the latest one of the first day before h0."""
    d0 = day_start(h0)
    out: dict[Key, Sums] = {}
    first_day: set[Key] = set()
    for device, version, layout, hour, n, windows, anomalies, blob in latest(h0, h1, d0):
        key = (device, version, layout)
        value = blob_sums(n, windows, anomalies, blob)
        held = out.get(key)
        out[key] = value if held is None else _plus(held, value)
        if hour < d0 + DAY_HOURS:
            first_day.add(key)
    if h0 > d0 and first_day:
        for device, version, layout, _, n, windows, anomalies, blob in latest(d0, h0, d0):
            key = (device, version, layout)
            if key in first_day:
                out[key] = _plus(out[key], blob_sums(n, windows, anomalies, blob), -1)
    return out


def _combined(hours: dict[Key, Sums], plus: WindowSums, minus: WindowSums) -> list[StatsSum]:
    for sums, sign in ((plus, 1), (minus, -1)):
        for s in sums.result():
            key = (s.device_id, s.model_version, s.layout)
            value = (s.rows, s.windows, s.anomalies, s.counts)
            held = hours.get(key)
            hours[key] = (value if sign > 0 else _plus((0, 0, 0, np.zeros_like(s.counts)), value, -1)) \
                if held is None else _plus(held, value, sign)
    return [StatsSum(device, version, layout, n, windows, anomalies, counts)
            for (device, version, layout), (n, windows, anomalies, counts) in sorted(
                hours.items(), key=lambda kv: (kv[0][0], kv[0][1] is None, kv[0][1] or "", kv[0][2])) if n > 0]


__all__ = [
    "HOUR_S",
    "Delta",
    "WindowSums",
    "batch_deltas",
    "blob_sums",
    "counts_blob",
    "cumulate",
    "day_groups",
    "day_start",
    "flat_counts",
    "full_hours",
    "hour_deltas",
    "hour_of",
    "hour_start",
    "hours_before",
    "json_row_deltas",
    "layout_of",
    "read_sums",
    "rollup_days_before",
    "running_sums",
    "sort_key",
    "sums_blob",
    "window_sums",
]
