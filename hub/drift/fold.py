"""Folding stats rows into per-device sketches: one running sum per device over a manifest's bins (pure).

Summing first and building one sketch per device is the cheap way to merge a day of per-minute stats; the
drift job and the reference it takes from the fleet both read the store in slices and fold them here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from hub.drift.sketch import Sketch
from hub.store.rows import StatsRow
from shared.manifest import ModelManifest
from shared.messages import Stats


@dataclass(frozen=True)
class Skipped:
    """Stats rows a run could not use, and why (one entry per model version and reason)."""

    model_version: str | None
    rows: int
    reason: str

class StatsFold:
    """Running per-device sums of one model version's stats rows, over its manifest's bins.

    `add` checks each row's shape against the manifest (a row of another shape is counted and skipped)
    and adds its counts; `sketches` turns each device's sum into a `Sketch` through `Sketch.from_stats`.
    Summing first and building one sketch per device is the cheap way to merge a day of per-minute stats.
    """

    def __init__(self, manifest: ModelManifest) -> None:
        self.manifest = manifest
        ref = manifest.reference
        self.bins = [len(edges) + 1 for edges in ref.bin_edges]
        self.score_bins = len(ref.score_bin_edges) + 1
        self._width = sum(self.bins)
        self._sums: dict[str, _DeviceSum] = {}
        self._bad = 0
        self._bad_example: StatsRow | None = None
        self.rows = 0

    def add(self, row: StatsRow) -> None:
        self.rows += 1
        if len(row.score_hist) != self.score_bins or [len(h) for h in row.feature_hist] != self.bins:
            self._bad += 1
            self._bad_example = self._bad_example or row
            return
        total = self._sums.get(row.device_id)
        if total is None:
            total = self._sums[row.device_id] = _DeviceSum(row, np.zeros(self._width, np.int64),
                                                           np.zeros(self.score_bins, np.int64))
        total.add(row, np.fromiter(itertools.chain.from_iterable(row.feature_hist), np.int64, self._width))

    def sketches(self) -> tuple[dict[str, Sketch], list[Skipped]]:
        """Device id → its merged sketch, and what was skipped (summarised, with the first reason)."""
        version = self.manifest.version
        skipped = []
        if self._bad_example is not None:
            reason = f"bins do not match the manifest, e.g. {self._why(self._bad_example)}"
            skipped.append(Skipped(version, self._bad, reason))
        offsets = list(itertools.accumulate(self.bins, initial=0))
        out: dict[str, Sketch] = {}
        for device, total in sorted(self._sums.items()):
            try:
                out[device] = Sketch.from_stats(total.stats(offsets), self.manifest.reference)
            except ValueError as exc:  # counts a sketch refuses (the store never holds them)
                skipped.append(Skipped(version, total.rows, f"device {device}: {exc}"))
        return out, skipped

    def _why(self, row: StatsRow) -> str:
        """What `Sketch.from_stats` says about a row of the wrong shape."""
        bins = [len(h) for h in row.feature_hist]
        flat = np.fromiter(itertools.chain.from_iterable(row.feature_hist), np.int64, sum(bins))
        example = _DeviceSum(row, flat, np.asarray(row.score_hist, dtype=np.int64))
        try:
            Sketch.from_stats(example.stats(list(itertools.accumulate(bins, initial=0))), self.manifest.reference)
        except ValueError as exc:
            return str(exc)
        return "unknown"  # pragma: no cover - only rows that failed the shape check get here


@dataclass
class _DeviceSum:
    """One device's counts so far (feature bins flattened), started from its first row."""

    first: StatsRow
    feature: NDArray[np.int64]
    score: NDArray[np.int64]
    rows: int = 0
    windows: int = 0
    anomalies: int = 0
    period_start: float = math.inf
    period_end: float = -math.inf

    def add(self, row: StatsRow, flat: NDArray[np.int64]) -> None:
        self.feature += flat
        self.score += np.asarray(row.score_hist, dtype=np.int64)
        self.rows += 1
        self.windows += row.windows
        self.anomalies += row.anomalies
        self.period_start = min(self.period_start, row.period_start)
        self.period_end = max(self.period_end, row.period_end)

    def stats(self, offsets: Sequence[int]) -> Stats:
        """The sum as a Stats message with the fields a sketch reads (the store validated every row)."""
        counts = self.feature.tolist()
        r = self.first
        # a sum nothing was added to yet (`StatsFold._why`) spans its first row's period, not (inf, -inf)
        start, end = (self.period_start, self.period_end) if self.rows else (r.period_start, r.period_end)
        return Stats(
            schema_version=1, msg_id=r.msg_id, device_id=r.device_id, ts=r.ts, model_version=r.model_version,
            period_start=start, period_end=end, windows=self.windows,
            anomalies=self.anomalies, samples=0, bad_readings=0, bad_rows=0, inference_errors=0, nan_scores=0,
            feature_hist=[counts[a:b] for a, b in itertools.pairwise(offsets)], score_hist=self.score.tolist(),
        )  # fmt: skip


def device_sketches(rows: Iterable[StatsRow], manifest: ModelManifest) -> tuple[dict[str, Sketch], list[Skipped]]:
    """Each device's rows of one model version merged into one sketch over `manifest`'s bins (see `StatsFold`)."""
    fold = StatsFold(manifest)
    for row in rows:
        fold.add(row)
    return fold.sketches()


def slices(start: float, end: float, step: float) -> Iterator[tuple[float, float]]:
    """Consecutive ``[a, b)`` covering ``[start, end)``; ValueError where `step` is lost in the float's rounding
    (``1e300 + 600 == 1e300``), which would otherwise repeat one slice forever.

    >>> list(slices(0, 25, 10))
    [(0, 10), (10, 20), (20, 25)]
    """
    a = start
    while a < end:
        b = min(a + step, end)
        if b <= a:
            raise ValueError(f"a step of {step} makes no progress from {a}")
        yield a, b
        a = b

