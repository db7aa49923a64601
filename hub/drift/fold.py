"""Folding stats rows into per-device sketches: one running sum per device over a manifest's bins (pure).

Summing first and building one sketch per device is the cheap way to merge a day of per-minute stats; the
drift job and the reference it takes from the fleet both read the store in slices and fold them here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from hub.drift.sketch import Sketch
from hub.store.rows import StatsRow, StatsSum
from shared.manifest import ModelManifest
from shared.messages import Stats


@dataclass(frozen=True)
class Skipped:
    """Stats rows a run could not use, and why (one entry per model version and reason)."""

    model_version: str | None
    rows: int
    reason: str

class StatsFold:
    """Running per-device sums of one model version's stats, over its manifest's bins.

    `add` takes one stats row, `add_sum` rows the store summed already (`IngestStore.stats_sums`); both check the
    shape against the manifest (counts of another shape are counted and skipped) and add the counts. `sketches`
    turns each device's sum into a `Sketch` through `Sketch.from_stats`. Summing first and building one sketch
    per device is the cheap way to merge a day of per-minute stats; integer sums do not depend on the order.
    """

    def __init__(self, manifest: ModelManifest) -> None:
        self.manifest = manifest
        ref = manifest.reference
        self.bins = [len(edges) + 1 for edges in ref.bin_edges]
        self.score_bins = len(ref.score_bin_edges) + 1
        self._width = sum(self.bins)
        self._sums: dict[str, _DeviceSum] = {}
        self._bad = 0
        self._bad_example: tuple[str, list[int], int] | None = None  # device, feature bins, score bins
        self.rows = 0

    def add(self, row: StatsRow) -> None:
        bins, score_bins = [len(h) for h in row.feature_hist], len(row.score_hist)
        if not self._fits(row.device_id, bins, score_bins, 1):
            return
        flat = np.fromiter(itertools.chain(itertools.chain.from_iterable(row.feature_hist), row.score_hist),
                           np.int64, self._width + self.score_bins)
        self._sum(row.device_id, row.model_version).add(1, row.windows, row.anomalies, flat)

    def add_sum(self, summed: StatsSum) -> None:
        """Rows of one device and layout already summed (`summed.counts`: feature bins, then score bins)."""
        bins, score_bins = summed.bins
        if self._fits(summed.device_id, bins, score_bins, summed.rows):
            self._sum(summed.device_id, summed.model_version).add(summed.rows, summed.windows, summed.anomalies,
                                                                  summed.counts)

    def _fits(self, device: str, bins: list[int], score_bins: int, rows: int) -> bool:
        self.rows += rows
        if score_bins == self.score_bins and bins == self.bins:
            return True
        self._bad += rows
        self._bad_example = self._bad_example or (device, bins, score_bins)
        return False

    def _sum(self, device: str, version: str | None) -> _DeviceSum:
        total = self._sums.get(device)
        if total is None:
            total = self._sums[device] = _DeviceSum(device, version, np.zeros(self._width + self.score_bins, np.int64))
        return total

    def sketches(self) -> tuple[dict[str, Sketch], list[Skipped]]:
        """Device id → its merged sketch, and what was skipped (summarised, with the first reason)."""
        version = self.manifest.version
        skipped = []
        if self._bad_example is not None:
            reason = f"bins do not match the manifest, e.g. {self._why(*self._bad_example)}"
            skipped.append(Skipped(version, self._bad, reason))
        # Every sum has the manifest's shape (`_fits`): scatter all devices' flat counts into zero-padded
        # (features, bins) matrices at once, not through a Stats message per device (`Sketch.from_stats`).
        devices = sorted(self._sums)
        if not devices:
            return {}, skipped
        flat = np.stack([self._sums[d].counts for d in devices])
        rows = np.repeat(np.arange(len(self.bins)), self.bins)
        cols = np.concatenate([np.arange(n) for n in self.bins]) if self.bins else np.zeros(0, np.int64)
        hists = np.zeros((len(devices), len(self.bins), max(self.bins, default=0)), np.int64)
        hists[:, rows, cols] = flat[:, :self._width]
        out: dict[str, Sketch] = {}
        for i, device in enumerate(devices):
            total = self._sums[device]
            try:
                out[device] = Sketch(hists[i], flat[i, self._width:], total.windows, total.anomalies)
            except ValueError as exc:  # counts a sketch refuses (the store never holds them)
                skipped.append(Skipped(version, total.rows, f"device {device}: {exc}"))
        return out, skipped

    def _why(self, device: str, bins: list[int], score_bins: int) -> str:
        """What `Sketch.from_stats` says about counts of the wrong shape."""
        example = _DeviceSum(device, self.manifest.version, np.zeros(sum(bins) + score_bins, np.int64))
        try:
            Sketch.from_stats(example.stats(list(itertools.accumulate(bins, initial=0))), self.manifest.reference)
        except ValueError as exc:
            return str(exc)
        return "unknown"  # pragma: no cover - only counts that failed the shape check get here


@dataclass
class _DeviceSum:
    """One device's counts so far: feature bins flattened, then the score bins."""

    device_id: str
    model_version: str | None
    counts: NDArray[np.int64]
    rows: int = 0
    windows: int = 0
    anomalies: int = 0

    def add(self, rows: int, windows: int, anomalies: int, counts: NDArray[np.int64]) -> None:
        self.counts += counts
        self.rows += rows
        self.windows += windows
        self.anomalies += anomalies

    def stats(self, offsets: Sequence[int]) -> Stats:
        """The sum as a Stats message with the fields a sketch reads (the store validated every row)."""
        counts = self.counts.tolist()
        return Stats(
            device_id=self.device_id, ts=0.0, model_version=self.model_version, period_start=0.0, period_end=0.0,
            windows=self.windows, anomalies=self.anomalies, samples=0, bad_readings=0, bad_rows=0,
            inference_errors=0, nan_scores=0, feature_hist=[counts[a:b] for a, b in itertools.pairwise(offsets)],
            score_hist=counts[offsets[-1]:],
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

