"""The streaming window features equal `extract`'s (the one definition) to float32 rounding, however readings arrive.

Tolerance: two float32 ulps of the value, plus a floor of 2^-40 of the window's largest |reading| (float64 noise of
`extract` itself on offset data, e.g. its std of a constant window is not always exactly 0): far below what float32
features can show.
"""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import shared.streaming
from shared.features import extract
from shared.streaming import WindowState


def reference(x: np.ndarray, size: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """`extract` on the windows the agent emits: ending at reading max(size, step) - 1, then every `step`."""
    ends = np.arange(max(size, step) - 1, len(x), step)
    if not len(ends):
        return ends, np.empty((0, x.shape[1] * 6), np.float32)
    return ends, extract(np.stack([x[e - size + 1 : e + 1] for e in ends]))


def stream(x: np.ndarray, size: int, step: int, cuts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Push `x` in the chunks `cuts` (their sizes, cycled; 0: one reading with `push_one`, the live agent's path),
    collecting the windows' end indices and features."""
    state = WindowState(size, step, x.shape[1])
    ends, feats, i, k = [np.empty(0, np.intp)], [np.empty((0, x.shape[1] * 6), np.float32)], 0, 0
    while i < len(x):
        n = cuts[k % len(cuts)]
        if n == 0:
            one = state.push_one(x[i], float(i))
            out = one if one is not None else state.push_many(x[:0])
            n = 1
        else:
            out = state.push_many(x[i : i + n], np.arange(i, i + n, dtype=np.float64)[: len(x) - i])
        ends.append(out.ends + i)
        feats.append(out.features)
        for j in range(min(len(out), 3)):  # each window knows its start and can give its readings back
            e = int(out.ends[j]) + i
            times, rows = out.window(j)
            assert out.starts[j] == times[0] == e - size + 1
            assert np.array_equal(rows, x[e - size + 1 : e + 1])
            assert out.window_bytes(j) == (times.astype("<f8").tobytes(), rows.astype("<f8").tobytes())
        i, k = i + n, k + 1
    return np.concatenate(ends), np.concatenate(feats)


def assert_parity(x: np.ndarray, size: int, step: int, cuts: list[int]) -> np.ndarray:
    want_ends, want = reference(x, size, step)
    ends, got = stream(x, size, step, cuts)
    assert ends.tolist() == want_ends.tolist()
    if len(ends):
        floor = 2.0**-40 * np.array([np.abs(x[e - size + 1 : e + 1]).max() for e in ends])[:, None]
        ulps = np.spacing(np.abs(want)).astype(np.float64)
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        bad = diff > 2 * ulps + floor
        assert not bad.any(), f"{bad.sum()} features differ, e.g. {got[bad][:3]} vs {want[bad][:3]}"
    return got


RNG = np.random.default_rng(12)
SERIES = {
    "noise": RNG.normal(size=(800, 3)),
    "large offset": 1e9 + RNG.normal(size=(800, 3)),
    "constant": np.full((500, 2), 0.1),
    "steps": np.repeat([[0.0, 5.0], [1e6, 5.0], [3.3, -2e8], [3.3, 7.0]], 100, axis=0),
    "trend": np.arange(800.0)[:, None] * 1e3 + RNG.normal(size=(800, 2)),
    "quantised": RNG.integers(0, 3, size=(800, 2)).astype(float) * 1e7 + 5e8,
    "spikes": np.where(RNG.random((800, 2)) < 0.01, 1e12, 1.0),
    # ties of 0.0 and -0.0 in min/max: push_one's Python comparisons must pick what numpy's minimum/maximum pick
    "signed zeros": np.where(RNG.random((400, 3)) < 0.5, 0.0, -0.0) + np.where(RNG.random((400, 3)) < 0.2, 1.0, 0.0),
}


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", sorted(SERIES))
@pytest.mark.parametrize(("size", "step"), [(30, 1), (2, 1), (7, 3), (30, 45), (64, 5)])
def test_streamed_features_equal_extract(name: str, size: int, step: int) -> None:
    x = SERIES[name]
    batched = assert_parity(x, size, step, [256, 1, 37, 2 * size + 1])
    one_by_one = assert_parity(x[:300], size, step, [1])
    assert same_bits(one_by_one, batched[: len(one_by_one)])  # however they were batched: same bits
    live = assert_parity(x[:300], size, step, [0])  # push_one, reading by reading
    assert same_bits(live, one_by_one)
    mixed = assert_parity(x, size, step, [0, 0, 5, 0, 2 * size + 1, 0, 1])  # push_one between batches
    assert same_bits(mixed, batched)


def test_a_long_stream_does_not_drift() -> None:
    """Nothing is subtracted from a running total: window 10^5 is as exact as window 1 (a slow ramp with noise)."""
    x = np.linspace(0.0, 1e7, 100_000)[:, None] + RNG.normal(size=(100_000, 1))
    assert_parity(x, 30, 1, [4096])


@settings(max_examples=60, deadline=None)
@given(
    x=arrays(np.float64, st.tuples(st.integers(0, 200), st.integers(1, 3)),
             elements=st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False)),
    size=st.integers(2, 40), step=st.integers(1, 50),
    cuts=st.lists(st.integers(0, 90), min_size=1, max_size=5),
)
def test_any_series_any_batching(x: np.ndarray, size: int, step: int, cuts: list[int]) -> None:
    got = assert_parity(x, size, step, cuts)  # cuts of 0 mix in push_one
    assert same_bits(got, stream(x, size, step, [1])[1])
    assert same_bits(got, stream(x, size, step, [0])[1])


def test_push_one_reading() -> None:
    state = WindowState(size=3, step=2, width=1)
    assert [state.push(np.array([v])) is None for v in (1.0, 2.0)] == [True, True]
    first = state.push(np.array([4.0]))
    assert first is not None and first.tolist() == extract(np.array([[1.0], [2.0], [4.0]])).tolist()
    assert state.push(np.array([5.0])) is None  # step 2
    assert state.push(np.array([6.0])) is not None
    out = state.push_one(np.array([7.0]), 6.0)  # no window: step 2
    assert out is None
    out = state.push_one(np.array([9.0]), 7.0)
    assert out is not None and len(out) == 1 and out.ends.tolist() == [0] and out.starts.tolist() == [0.0]
    assert out.window(0)[0].tolist() == [0.0, 6.0, 7.0] and out.window(0)[1][:, 0].tolist() == [6.0, 7.0, 9.0]
    assert out.features.tolist() == extract(np.array([[[6.0], [7.0], [9.0]]])).tolist()


def test_bad_shapes_and_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="size >= 2"):
        WindowState(1, 1, 1)
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        WindowState(3, 1, 2).push_many(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="expected 2 readings"):
        WindowState(3, 1, 2).push_one(np.zeros(3))


def test_doctests() -> None:
    results = doctest.testmod(shared.streaming)
    assert results.attempted > 0 and results.failed == 0
