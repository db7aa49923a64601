"""Hypothesis strategies for histogram counts."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

counts = st.integers(min_value=0, max_value=10_000)


@st.composite
def histogram(draw: st.DrawFn, n_bins: int | None = None) -> np.ndarray:
    """A non-empty histogram (total > 0) of 1–25 bins, or `n_bins` bins."""
    size = n_bins if n_bins is not None else draw(st.integers(min_value=1, max_value=25))
    values = draw(st.lists(counts, min_size=size, max_size=size).filter(lambda v: sum(v) > 0))
    return np.array(values, dtype=np.int64)


@st.composite
def histogram_pair(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Two non-empty histograms over the same bins."""
    size = draw(st.integers(min_value=1, max_value=25))
    return draw(histogram(size)), draw(histogram(size))


@st.composite
def histogram_matrix(draw: st.DrawFn, shape: tuple[int, int]) -> np.ndarray:
    """A (features, bins) matrix of counts, any totals (zero included)."""
    flat = draw(st.lists(counts, min_size=shape[0] * shape[1], max_size=shape[0] * shape[1]))
    return np.array(flat, dtype=np.int64).reshape(shape)
