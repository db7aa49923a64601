"""Mergeable stats sketches: per-feature histogram counts, a score histogram and window counts.

Agents count each feature over the manifest's reference bin edges (``len(edges) + 1`` open-ended bins,
`shared.features.histogram_counts`). Features may have different numbers of bins; a `Sketch` stores them
as one ``(n_features, n_bins)`` matrix, zero-padded on the right, so the hub can vectorise over features.
Padding is harmless to every statistic here: a bin empty on both sides contributes nothing. Merging is
element-wise addition, hence associative and commutative; it refuses sketches of different shapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hub.errors import SketchShapeError
from shared.features import histogram_counts
from shared.manifest import Reference
from shared.messages import Stats


def _count_array(values: ArrayLike, name: str, ndim: int) -> NDArray[np.int64]:
    arr = np.asarray(values)
    if arr.ndim != ndim:
        raise SketchShapeError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0):
        raise ValueError(f"{name} must hold non-negative integer counts")
    out = np.array(arr, dtype=np.int64)
    out.setflags(write=False)
    return out


def merge(hists: Sequence[ArrayLike]) -> NDArray[np.int64]:
    """Sum count arrays of one shape (e.g. the ``feature_hist`` of several devices).

    >>> merge([[[1, 2], [3, 4]], [[10, 20], [30, 40]]]).tolist()
    [[11, 22], [33, 44]]
    """
    if len(hists) == 0:
        raise ValueError("nothing to merge")
    arrays = [np.asarray(h, dtype=np.int64) for h in hists]
    shape = arrays[0].shape
    for i, arr in enumerate(arrays[1:], start=1):
        if arr.shape != shape:
            raise SketchShapeError(f"histogram {i} has shape {arr.shape}, histogram 0 has {shape}")
    total = np.zeros(shape, dtype=np.int64)
    for arr in arrays:
        total += arr
    return total


def pad_counts(rows: Sequence[Sequence[int]], width: int | None = None) -> NDArray[np.int64]:
    """Ragged per-feature counts as a zero-padded ``(n_features, width)`` matrix.

    >>> pad_counts([[1, 2, 3], [4, 5]]).tolist()
    [[1, 2, 3], [4, 5, 0]]
    """
    widest = max((len(r) for r in rows), default=0)
    width = widest if width is None else width
    if widest > width:
        raise SketchShapeError(f"a feature has {widest} bins, more than the width {width}")
    out = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


@dataclass(frozen=True, eq=False)
class Sketch:
    """One device's (or a merged group's) counts over a period.

    Attributes
    ----------
    feature_hist : (n_features, n_bins) int array
        Counts per feature over its reference bins, zero-padded to the widest feature.
    score_hist : (n_score_bins,) int array
        Counts of prediction scores over the score bin edges; empty when unknown.
    windows : int
        Windows scored: the sample size the minimum-sample guard checks.
    anomalies : int or None
        Windows whose score crossed the threshold; None when unknown (a manifest's reference).

    Examples
    --------
    >>> a = Sketch(np.array([[1, 2, 0]]), np.array([3, 0]), windows=3, anomalies=0)
    >>> b = Sketch(np.array([[0, 1, 1]]), np.array([1, 1]), windows=2, anomalies=1)
    >>> m = a.merge(b)
    >>> m.feature_hist.tolist(), m.score_hist.tolist(), m.windows, m.anomalies
    ([[1, 3, 1]], [4, 1], 5, 1)
    """

    feature_hist: NDArray[np.int64]
    score_hist: NDArray[np.int64]
    windows: int
    anomalies: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "feature_hist", _count_array(self.feature_hist, "feature_hist", 2))
        object.__setattr__(self, "score_hist", _count_array(self.score_hist, "score_hist", 1))
        if self.windows < 0:
            raise ValueError("windows must be non-negative")
        if self.anomalies is not None and not 0 <= self.anomalies <= self.windows:
            raise ValueError(f"anomalies ({self.anomalies}) must lie between 0 and windows ({self.windows})")
        object.__setattr__(self, "windows", int(self.windows))
        if self.anomalies is not None:
            object.__setattr__(self, "anomalies", int(self.anomalies))

    @property
    def n_features(self) -> int:
        return int(self.feature_hist.shape[0])

    def merge(self, other: Sketch) -> Sketch:
        """The sketch of both periods or devices together."""
        return merge_sketches((self, other))

    @classmethod
    def from_stats(cls, stats: Stats, reference: Reference) -> Sketch:
        """A device's `Stats` message as a sketch, checked against the manifest's reference bins."""
        edges = reference.bin_edges
        if len(stats.feature_hist) != len(edges):
            raise SketchShapeError(
                f"stats from {stats.device_id} has {len(stats.feature_hist)} features, the manifest {len(edges)}"
            )
        for i, (row, feature_edges) in enumerate(zip(stats.feature_hist, edges, strict=True)):
            if len(row) != len(feature_edges) + 1:
                raise SketchShapeError(
                    f"stats from {stats.device_id}: feature {i} has {len(row)} bins, "
                    f"the manifest {len(feature_edges) + 1}"
                )
        if len(stats.score_hist) != len(reference.score_bin_edges) + 1:
            raise SketchShapeError(
                f"stats from {stats.device_id}: score histogram has {len(stats.score_hist)} bins, "
                f"the manifest {len(reference.score_bin_edges) + 1}"
            )
        width = max(len(e) + 1 for e in edges) if edges else 0
        return cls(
            feature_hist=pad_counts(stats.feature_hist, width),
            score_hist=np.asarray(stats.score_hist, dtype=np.int64),
            windows=stats.windows,
            anomalies=stats.anomalies,
        )

    @classmethod
    def from_reference(cls, reference: Reference, *, anomalies: int | None = None) -> Sketch:
        """The manifest's reference histograms as a sketch; windows is the largest feature total."""
        hist = pad_counts(reference.histograms)
        windows = int(hist.sum(axis=1).max()) if hist.size else 0
        return cls(hist, np.asarray(reference.score_histogram, dtype=np.int64), windows, anomalies)

    @classmethod
    def from_values(
        cls,
        features: ArrayLike,
        edges: Sequence[ArrayLike],
        *,
        scores: ArrayLike | None = None,
        score_edges: ArrayLike | None = None,
        anomalies: int | None = None,
    ) -> Sketch:
        """Bin a ``(windows, n_features)`` matrix (and optional scores) the way an agent does.

        >>> s = Sketch.from_values([[0.5], [1.5], [2.5]], [[1.0, 2.0]])
        >>> s.feature_hist.tolist(), s.windows
        ([[1, 1, 1]], 3)
        """
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(edges):
            raise SketchShapeError(f"expected (windows, {len(edges)}) features, got shape {x.shape}")
        rows = [histogram_counts(x[:, j], np.asarray(e, dtype=np.float64)) for j, e in enumerate(edges)]
        score_hist = np.zeros(0, dtype=np.int64)
        if scores is not None:
            if score_edges is None:
                raise ValueError("scores need score_edges")
            score_hist = histogram_counts(np.asarray(scores, dtype=np.float64), np.asarray(score_edges))
        return cls(pad_counts([r.tolist() for r in rows]), score_hist, x.shape[0], anomalies)


def merge_sketches(sketches: Iterable[Sketch]) -> Sketch:
    """Merge sketches of one manifest: counts add, anomalies stay unknown if any is unknown."""
    items = list(sketches)
    if not items:
        raise ValueError("nothing to merge")
    for i, s in enumerate(items[1:], start=1):
        if s.feature_hist.shape != items[0].feature_hist.shape:
            raise SketchShapeError(
                f"sketch {i} has feature_hist shape {s.feature_hist.shape}, sketch 0 has {items[0].feature_hist.shape}"
            )
        if s.score_hist.shape != items[0].score_hist.shape:
            raise SketchShapeError(
                f"sketch {i} has {s.score_hist.shape[0]} score bins, sketch 0 has {items[0].score_hist.shape[0]}"
            )
    anomalies = [s.anomalies for s in items]
    return Sketch(
        feature_hist=merge([s.feature_hist for s in items]),
        score_hist=merge([s.score_hist for s in items]),
        windows=sum(s.windows for s in items),
        anomalies=None if any(a is None for a in anomalies) else sum(a for a in anomalies if a is not None),
    )
