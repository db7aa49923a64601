"""Stats summed for drift (`stats_sums`): cumulative roll-ups and raw ends give what summing the rows gives, on
both backends, whatever order the rows arrive in; a redelivery is rolled up once; retention drops the roll-ups of
the whole days it pruned."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from hub.store.ports import HubStore
from hub.store.postgres import schema as postgres_schema
from hub.store.retention import Cutoffs
from hub.store.rollup import (
    HOUR_S,
    Delta,
    cumulate,
    day_start,
    flat_counts,
    full_hours,
    hour_of,
    json_row_deltas,
    layout_of,
)
from hub.store.sqlite import SqliteHubStore
from hub.store.sqlite import schema as sqlite_schema
from tests.hub.store.messages import rec, stats

H0 = 472_222 * HOUR_S  # an hour boundary near T0


def row_sums(store: HubStore, start: float, end: float) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """What `stats_sums` must give: the rows of `stats_between` summed by hand."""
    out: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in store.stats_between(start, end):
        acc = out[(r.device_id, r.model_version, layout_of(r.feature_hist, r.score_hist))]
        acc[0] += 1
        acc[1] += r.windows
        acc[2] += r.anomalies
        acc[3] = acc[3] + flat_counts(r.feature_hist, r.score_hist)
    return {k: (v[0], v[1], v[2], tuple(v[3].tolist())) for k, v in out.items()}


def summed(store: HubStore, start: float, end: float) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {(s.device_id, s.model_version, s.layout): (s.rows, s.windows, s.anomalies, tuple(s.counts.tolist()))
            for s in store.stats_sums(start, end)}


def fill(store: HubStore) -> None:
    rng = np.random.default_rng(4)
    msgs = []
    for i, end in enumerate(H0 + rng.uniform(-3 * HOUR_S, 3 * HOUR_S, size=60)):
        hist = [rng.integers(0, 50, 3).tolist(), rng.integers(0, 50, 2).tolist()]
        msgs.append(stats(f"dev-{i % 3}", float(end), model_version=None if i % 7 == 0 else "v1",
                          windows=int(rng.integers(1, 99)), feature_hist=hist, score_hist=[i, 2**40]))
    msgs += [stats("dev-1", H0, model_version="v1"), stats("dev-1", H0 - 1e-6, model_version="v1"),
             stats("dev-2", H0 + 10, model_version="v1", feature_hist=[[1, 2], [3, 4]])]  # another layout
    records = [rec(m) for m in msgs]
    assert store.ingest_batch([*records, records[0]]).duplicates == {"stats": 1}
    assert store.ingest_batch(records[:20]).duplicates == {"stats": 20}


@pytest.mark.parametrize("start, end", [(H0 - 3 * HOUR_S, H0 + 3 * HOUR_S), (H0 - 9000.5, H0 + 4000.25),
                                        (H0 - 100, H0 + 100), (H0, H0 + HOUR_S), (H0 - 1e-6, H0), (H0, H0)])
def test_sums_are_the_sums_of_the_rows(store: HubStore, start: float, end: float) -> None:
    fill(store)
    want = row_sums(store, start, end)
    assert summed(store, start, end) == want
    assert (start == end) == (not want)


def test_rows_without_a_counts_blob_are_read_from_their_json(store: HubStore) -> None:
    """Rows stored before m012 keep NULL counts: the window's raw ends decode their JSON instead."""
    fill(store)
    want = row_sums(store, H0 - 9000.5, H0 + 4000.25)
    with store._write() as conn:  # type: ignore[attr-defined]
        conn.execute("UPDATE stats SET layout = NULL, counts = NULL")
    assert summed(store, H0 - 9000.5, H0 + 4000.25) == want


def test_retention_drops_the_roll_ups_of_whole_days_before_the_cutoff(store: HubStore) -> None:
    """Roll-ups are cumulative within a UTC day, so they go a day at a time: the cutoff's day keeps them whole."""
    fill(store)
    day = H0 + 2 * HOUR_S  # a UTC day starts here (hour 472,224 = 19,676 × 24)
    assert day_start(hour_of(day) or 0) * HOUR_S == day
    everything = row_sums(store, H0 - 4 * HOUR_S, H0 + 4 * HOUR_S)
    prune(store, H0 - HOUR_S)  # mid-day: the stats go, that day's roll-ups stay
    assert summed(store, H0 - 4 * HOUR_S, H0 + 4 * HOUR_S) == everything
    prune(store, day)
    assert summed(store, H0 - 4 * HOUR_S, H0 + 4 * HOUR_S) == row_sums(store, day, H0 + 4 * HOUR_S)


def prune(store: HubStore, keep: float) -> None:
    store.prune(Cutoffs(dead_letters=0, events=0, drift_reports=0, stats=keep, samples=0),
                dead_letters_max_rows=100, dead_letters_max_bytes=10**6)


def test_late_rows_add_to_every_later_roll_up_of_their_day(store: HubStore) -> None:
    """Batches arrive out of hour order (a device catching up, a late batch): the cumulative roll-ups still give
    every window's row sums, windows starting or ending anywhere in a day, or across days."""
    rng = np.random.default_rng(9)
    ends = H0 + rng.uniform(-5 * HOUR_S, 5 * HOUR_S, size=90)
    msgs = [stats(f"dev-{i % 2}", float(end), model_version="v1", windows=int(rng.integers(1, 9)),
                  feature_hist=[rng.integers(0, 9, 3).tolist(), rng.integers(0, 9, 2).tolist()], score_hist=[i, 1])
            for i, end in enumerate(ends)]
    order = np.argsort(-ends)  # newest first: every batch after the first holds rows of earlier hours
    for k in range(0, 90, 20):
        store.ingest_batch([rec(msgs[i]) for i in order[k:k + 20]])
    for start, end in [(H0 - 5 * HOUR_S, H0 + 5 * HOUR_S), (H0 - 3 * HOUR_S + 60, H0 + HOUR_S + 2000),
                       (H0 - 1800, H0 + 3 * HOUR_S - 1), (H0 + 2 * HOUR_S, H0 + 4 * HOUR_S + 3000.5)]:
        assert summed(store, start, end) == row_sums(store, start, end), (start, end)


def test_hours_are_exact_at_their_boundaries() -> None:
    assert hour_of(H0) == 472_222 and hour_of(math.nextafter(H0, -math.inf)) == 472_221
    assert hour_of(1e300) is None and hour_of(-0.5) == -1
    assert full_hours(H0 - 1, H0 + 2 * HOUR_S) == (472_222, 472_224)
    assert full_hours(H0 + 1, H0 + HOUR_S) == (472_223, 472_223)  # none
    assert full_hours(-math.inf, math.inf) == (-(2**40), 2**40)


def test_the_migration_makes_the_hourly_sums_before_it_cumulative(store: HubStore) -> None:
    """m013 on roll-ups as m012 left them (each hour's own sums): the sums read afterwards are the rows' sums."""
    fill(store)
    mark = "?" if isinstance(store, SqliteHubStore) else "%s"
    with store._write() as conn:  # type: ignore[attr-defined]
        old = conn.execute("SELECT device_id, model_version, period_end, windows, anomalies, feature_hist, score_hist "
                           "FROM stats").fetchall()
        conn.execute("DELETE FROM stats_hourly")
        conn.cursor().executemany(
            "INSERT INTO stats_hourly (device_id, model_version, layout, hour, rows, windows, anomalies, counts) "
            f"VALUES ({', '.join([mark] * 8)})",
            [(*key, d.rows, d.windows, d.anomalies, d.blob()) for key, d in json_row_deltas(old).items()])
        if isinstance(store, SqliteHubStore):
            sqlite_schema.cumulative_rollups(conn)
        else:
            postgres_schema.cumulative_rollups(conn)
    for start, end in [(H0 - 3 * HOUR_S, H0 + 3 * HOUR_S), (H0 - 9000.5, H0 + 4000.25)]:
        assert summed(store, start, end) == row_sums(store, start, end)


def test_cumulate_adds_a_late_hour_to_every_later_roll_up_and_starts_a_new_hour_from_the_one_before() -> None:
    def sums(n: int) -> tuple[int, int, int, np.ndarray]:
        return n, 10 * n, n, np.array([n, 2 * n])

    def delta(n: int) -> Delta:
        d = Delta()
        d.add(10 * n, n, np.array([n, 2 * n]))
        d.rows = n
        return d

    out = cumulate(sums(1), [(5, sums(3)), (6, sums(4)), (9, sums(7))], [(5, delta(1)), (8, delta(2))])
    got = [(hour, s[0], s[1], s[3].tolist(), new) for hour, s, new in out]
    assert got == [(5, 4, 40, [4, 8], False), (6, 5, 50, [5, 10], False),  # held + the hour-5 row
                   (8, 7, 70, [7, 14], True),  # new: hour 6's held sums + both rows
                   (9, 10, 100, [10, 20], False)]
    assert [(h, s[0], new) for h, s, new in cumulate(sums(2), [], [(3, delta(1))])] == [(3, 3, True)]
