"""Golden tests for the one feature implementation shared by training and inference."""

from __future__ import annotations

import numpy as np
import pytest

from shared.features import STATS, WindowSpec, extract, feature_names, histogram_counts, sliding_windows


def test_golden_values():
    window = np.array([[1.0, 5.0], [2.0, 3.0], [4.0, 4.0], [7.0, 0.0]])
    got = extract(window)
    # per sensor: mean, std (population), min, max, last, least-squares slope per reading
    expected = np.array(
        [3.5, np.sqrt(5.25), 1.0, 7.0, 7.0, 2.0, 3.0, np.sqrt(3.5), 0.0, 5.0, 0.0, -1.4], dtype=np.float32
    )
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_batch_equals_single():
    rng = np.random.default_rng(3)
    batch = rng.normal(size=(50, 30, 6)) * 100
    together = extract(batch)
    one_by_one = np.stack([extract(w) for w in batch])
    np.testing.assert_array_equal(together, one_by_one)


def test_names_match_layout():
    names = feature_names(["temp", "vib"])
    assert names[:6] == [f"temp.{s}" for s in STATS]
    assert len(names) == extract(np.zeros((3, 2))).shape[0]


def test_sliding_windows_step_and_count():
    series = np.arange(20, dtype=float).reshape(10, 2)
    spec = WindowSpec(sensors=["a", "b"], size=4, step=3)
    wins = sliding_windows(series, spec)
    assert wins.shape == (3, 4, 2)
    np.testing.assert_array_equal(wins[1], series[3:7])
    assert sliding_windows(series[:3], spec).shape == (0, 4, 2)


def test_histogram_counts_open_ended():
    counts = histogram_counts(np.array([-100.0, 0.0, 0.5, 1.0, 99.0]), np.array([0.0, 1.0]))
    assert counts.tolist() == [1, 2, 2]
    assert counts.sum() == 5


def test_bad_shapes_and_specs():
    with pytest.raises(ValueError):
        extract(np.zeros((1, 3)))
    with pytest.raises(ValueError):
        WindowSpec(sensors=["a", "a"], size=3, step=1)


def test_fast_path_equals_numpy_reference_bit_for_bit():
    """`extract` avoids numpy's Python wrappers; it must still give exactly np.mean/np.std/… results."""
    x = np.random.default_rng(11).normal(size=(200, 30, 6)) * 1e3 + 5
    t = np.arange(30) - 14.5
    reference = np.stack(
        [x.mean(axis=1), x.std(axis=1), x.min(axis=1), x.max(axis=1), x[:, -1, :], (t / (t @ t)) @ x], axis=-1
    ).reshape(200, -1).astype(np.float32)
    np.testing.assert_array_equal(extract(x), reference)
