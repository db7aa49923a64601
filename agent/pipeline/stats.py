"""Per-period statistics the agent reports: feature and score sketches, counts, latency percentiles.

Feature rows are buffered and folded into histograms in chunks, so the per-window cost is one row copy. The agent
folds them after its commits (`fold_early`); a chunk that fills between two commits is folded one column a window
while the next chunk fills (two buffers), so no live window pays for a whole chunk (0.5 ms).
"""

from __future__ import annotations

import numpy as np

from shared.features import histogram_counts
from shared.manifest import ModelManifest
from shared.messages import Stats

CHUNK = 1024
LATENCY_SAMPLES = 4096


class StatsAccumulator:
    def __init__(self, manifest: ModelManifest, device_id: str, start: float) -> None:
        self.device_id = device_id
        self.model_version = manifest.version
        self.edges = [np.asarray(e, dtype=np.float64) for e in manifest.reference.bin_edges]
        self.score_edges = np.asarray(manifest.reference.score_bin_edges, dtype=np.float64)
        self._rows = np.empty((CHUNK, len(self.edges)), dtype=np.float32)
        self._scores = np.empty(CHUNK, dtype=np.float64)
        self._full_rows, self._full_scores = np.empty_like(self._rows), np.empty_like(self._scores)
        self._unfolded = 0  # columns of the full chunk not yet folded: its features, then its scores
        self._latency = np.empty(LATENCY_SAMPLES, dtype=np.float64)
        self._reset(start)

    def _reset(self, start: float) -> None:
        self.period_start = start
        self.feature_hist = [np.zeros(len(e) + 1, dtype=np.int64) for e in self.edges]
        self.score_hist = np.zeros(len(self.score_edges) + 1, dtype=np.int64)
        self._n = 0
        self._lat_n = 0
        self.windows = self.anomalies = self.samples = 0
        self.bad_readings = self.bad_rows = self.inference_errors = self.nan_scores = self.storage_dropped = 0

    def add(self, features: np.ndarray, score: float, anomaly: bool, latency_s: float) -> None:
        """Record one scored window."""
        self.add_many(features[None], [score], int(anomaly), latency_s)

    def add_many(self, features: np.ndarray, scores: list[float], anomalies: int, latency_s: float) -> None:
        """Record scored windows at once: ``features (k, n)``, their scores, how many were anomalies, and the
        latency of each (the same for all: their batch's share)."""
        k, done = len(scores), 0
        if k == 1 and self._n < CHUNK - 1:  # a live source's window: no slices
            self._rows[self._n] = features[0]
            self._scores[self._n] = scores[0]
            self._n += 1
            done = 1
        while done < k:
            take = min(k - done, CHUNK - self._n)
            self._rows[self._n : self._n + take] = features[done : done + take]
            self._scores[self._n : self._n + take] = scores[done : done + take]
            self._n += take
            done += take
            if self._n == CHUNK:
                self._fold_full(self._unfolded)  # a batch can fill the next chunk before the last is folded
                self._rows, self._full_rows = self._full_rows, self._rows
                self._scores, self._full_scores = self._full_scores, self._scores
                self._n, self._unfolded = 0, len(self.edges) + 1
        if self._unfolded:  # one column a window: a live source's windows each pay a little
            self._fold_full(1 if k == 1 else self._unfolded)
        if k == 1:  # a live source's window: no index array
            self._latency[self._lat_n % LATENCY_SAMPLES] = latency_s
        else:
            self._latency[(self._lat_n + np.arange(min(k, LATENCY_SAMPLES))) % LATENCY_SAMPLES] = latency_s
        self._lat_n += k
        self.windows += k
        self.anomalies += anomalies

    def _fold_full(self, columns: int) -> None:
        """Fold the next `columns` columns of the full chunk into the histograms."""
        n_features = len(self.edges)
        for _ in range(columns):
            j = n_features + 1 - self._unfolded
            if j < n_features:
                self.feature_hist[j] += histogram_counts(self._full_rows[:, j], self.edges[j])
            else:
                self.score_hist += histogram_counts(self._full_scores, self.score_edges)
            self._unfolded -= 1

    def fold_early(self) -> None:
        """Fold the buffered rows if they fill half a chunk: the agent calls it after each commit (off every window's
        path), so with commits at most ``CHUNK // 2`` windows apart no window pays for a fold."""
        if self._n >= CHUNK // 2 or self._unfolded:
            self._fold()

    def _fold(self) -> None:
        """Fold everything buffered: the rest of the full chunk and the rows of the current one."""
        self._fold_full(self._unfolded)
        rows = self._rows[: self._n]
        for j, edges in enumerate(self.edges):
            self.feature_hist[j] += histogram_counts(rows[:, j], edges)
        self.score_hist += histogram_counts(self._scores[: self._n], self.score_edges)
        self._n = 0

    def flush(self, now: float, model_version: str | None = None) -> Stats:
        """The Stats message for the period ending now; starts a new period."""
        self._fold()
        lat = self._latency[: min(self._lat_n, LATENCY_SAMPLES)]
        p50, p99 = (np.percentile(lat, [50, 99]) * 1000.0).tolist() if lat.size else (None, None)
        message = Stats(
            device_id=self.device_id,
            ts=now,
            model_version=model_version or self.model_version,
            period_start=self.period_start,
            period_end=now,
            windows=self.windows,
            anomalies=self.anomalies,
            samples=self.samples,
            bad_readings=self.bad_readings,
            bad_rows=self.bad_rows,
            inference_errors=self.inference_errors,
            nan_scores=self.nan_scores,
            feature_hist=[h.tolist() for h in self.feature_hist],
            score_hist=self.score_hist.tolist(),
            latency_p50_ms=p50,
            latency_p99_ms=p99,
            storage_dropped=self.storage_dropped,
        )
        self._reset(now)
        return message
