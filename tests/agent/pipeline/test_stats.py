"""The stats' histograms count every window once, however the chunks are folded (a full chunk is folded a column a
window while the next one fills)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.pipeline.stats import CHUNK, StatsAccumulator
from shared.features import histogram_counts
from shared.manifest import load_manifest


def test_histograms_count_every_window_once_one_at_a_time_or_in_batches(initial_model_dir: Path) -> None:
    manifest = load_manifest((initial_model_dir / "manifest.json").read_bytes())
    stats = StatsAccumulator(manifest, "dev-stats", 0.0)
    rng = np.random.default_rng(3)
    n = int(2.5 * CHUNK)
    rows = rng.normal(size=(n, len(stats.edges))).astype(np.float32)
    scores = rng.random(n)
    i = 0
    for take in [1] * (CHUNK + 5) + [CHUNK - 5, 7, 1, 1, 300]:  # one a call, then a batch over a chunk boundary
        stats.add_many(rows[i : i + take], scores[i : i + take].tolist(), 0, 1e-5)
        i += take
        if i > 2 * CHUNK:  # as the agent after a commit
            stats.fold_early()
    stats.add_many(rows[i:], scores[i:].tolist(), 0, 1e-5)  # the rest, folded by flush
    message = stats.flush(1.0)
    want = [histogram_counts(rows[:, j], edges).tolist() for j, edges in enumerate(stats.edges)]
    assert message.windows == n
    assert message.feature_hist == want
    assert message.score_hist == histogram_counts(scores, stats.score_edges).tolist()
    assert stats.flush(2.0).feature_hist == [[0] * (len(e) + 1) for e in stats.edges]  # a new period starts empty
