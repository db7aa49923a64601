"""The drift run's read through cumulative roll-ups (`IngestStore.stats_sums`) against the old read of every stats row:
same sketches, same reports, same skipped rows, over a day with ragged ends, redeliveries, odd bins and old rows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hub.app.settings import DriftSettings
from hub.drift.fold import StatsFold, device_sketches
from hub.drift.service import DriftService, cohort_map
from hub.registry.references import ReferenceLibrary
from hub.store import IngestRecord
from hub.store.rollup import hour_start
from hub.store.sqlite import SqliteHubStore
from shared.manifest import ModelManifest
from shared.wire import replace
from tests.hub.drift.test_service import SHIFTED, SITES, T0, draw_stats, status

DAY_S = 86_400.0


def a_day(store: SqliteHubStore, manifest: ModelManifest, seed: int) -> None:
    """Six devices' stats at random times over 26 h (so both window ends fall mid-hour), dev-0 shifted, one
    redelivered batch, a row exactly on an hour boundary, rows of other bins, of no version, of an unknown one."""
    rng = np.random.default_rng(seed)
    messages: list[Any] = [status(d) for d in SITES]
    for device in SITES:
        shift = {SHIFTED: 3} if device == "dev-0" else None
        ends = T0 - rng.uniform(0, DAY_S + 7200, size=40)
        messages += [draw_stats(rng, manifest, device, float(e), int(rng.integers(20, 300)), shift=shift)
                     for e in ends]
    boundary = float((T0 // 3600 - 5) * 3600)
    messages.append(draw_stats(rng, manifest, "dev-1", boundary))
    odd = draw_stats(rng, manifest, "dev-2", T0 - 5000)
    messages.append(replace(odd, feature_hist=[h[:-1] for h in odd.feature_hist]))
    messages.append(replace(draw_stats(rng, manifest, "dev-3", T0 - 7000), model_version=None))
    messages.append(draw_stats(rng, manifest, "dev-4", T0 - 9000, version="v9"))
    records = [IngestRecord(m, T0) for m in messages]
    assert not store.ingest_batch(records).rejected
    again = store.ingest_batch(records[10:60])  # a redelivery: stored once, rolled up once
    assert again.duplicates == {"stats": 50}


def old_read(store: SqliteHubStore, manifest: ModelManifest, start: float, end: float) -> tuple[Any, Counter[str]]:
    """What `DriftService.run` read before roll-ups: every row, folded one by one."""
    rows = store.stats_between(start, end)
    skipped: Counter[str] = Counter(r.model_version or "-" for r in rows if r.model_version != manifest.version)
    sketches, bad = device_sketches([r for r in rows if r.model_version == manifest.version], manifest)
    skipped.update({"bad_bins": sum(b.rows for b in bad)})
    return sketches, skipped


@pytest.mark.parametrize("seed, whole_hours", [(1, False), (2, True)])
def test_roll_ups_give_the_sketches_and_reports_of_the_rows(
    store: SqliteHubStore, models_dir: Path, manifest: ModelManifest, seed: int, whole_hours: bool
) -> None:
    """Exact ends (whole_hours off): the start's partial hour is added raw, the rows after the end (up to T0)
    subtracted from the end hour's roll-up; whole hours: the window starts on the hour and reads no raw start."""
    a_day(store, manifest, seed)
    now = T0 - 1234.5  # mid-hour, with rows after it in its hour
    start = hour_start(now - DAY_S) if whole_hours else now - DAY_S
    sketches, skipped = old_read(store, manifest, start, now)

    fold = StatsFold(manifest)
    for summed in store.stats_sums(start, now):
        if summed.model_version == manifest.version:
            fold.add_sum(summed)
    new, bad = fold.sketches()
    assert sorted(new) == sorted(sketches) == sorted(SITES)
    for device, sketch in sketches.items():
        np.testing.assert_array_equal(new[device].feature_hist, sketch.feature_hist)
        np.testing.assert_array_equal(new[device].score_hist, sketch.score_hist)
        assert (new[device].windows, new[device].anomalies) == (sketch.windows, sketch.anomalies)
    assert sum(b.rows for b in bad) == skipped["bad_bins"] == 1

    service = DriftService(store, ReferenceLibrary(models_dir), DriftSettings(window_s=DAY_S,
                                                                              whole_hours=whole_hours))
    old_reports = service._reports(manifest, sketches, cohort_map(store.devices()))
    reports = service.run(now)
    assert [r["scope"] for r in reports] == [r.scope for r, _ in old_reports]
    assert reports[0]["window_start"] == start
    for stored, (old, _) in zip(reports, old_reports, strict=True):
        want = old.to_dict()
        assert {k: stored[k] for k in want} == want
    assert any(r["verdict"] == "drift" for r in reports)
    by_reason = {(s.model_version, s.reason.split(":")[0]): s.rows for s in service.last_skipped}
    assert by_reason[(None, "stats without a model version")] == skipped["-"] == 1
    assert by_reason[("v9", "unknown model version 'v9'")] == skipped["v9"] == 1


def test_rows_stored_before_the_roll_ups_are_read_from_their_json(
    store: SqliteHubStore, manifest: ModelManifest
) -> None:
    """A window's ragged ends among rows of before m012 (no counts blob): their JSON is read, with the same sums."""
    a_day(store, manifest, 3)
    now = T0 - 600.0
    before = store.stats_sums(now - DAY_S, now)
    with store._write() as conn:
        conn.execute("UPDATE stats SET layout = NULL, counts = NULL")
    after = store.stats_sums(now - DAY_S, now)
    assert [(s.device_id, s.model_version, s.layout, s.rows, s.windows, s.anomalies) for s in after] == \
        [(s.device_id, s.model_version, s.layout, s.rows, s.windows, s.anomalies) for s in before]
    for a, b in zip(after, before, strict=True):
        np.testing.assert_array_equal(a.counts, b.counts)
