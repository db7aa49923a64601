"""Feature set 2's pure parts: regime normalisation, history features (incremental = batch, bit for bit), names,
and the manifest's regime statistics."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest

from shared.features import (
    REGIMES,
    WindowSpec,
    context_features,
    extract,
    feature_names,
    series_features,
    sliding_windows,
)
from shared.history import CONTEXT, SPANS, UnitHistory, history_features, history_names
from shared.manifest import MANIFEST_FILE, ModelManifest, dump_manifest, load_manifest
from shared.regimes import RegimeStats, RegimeTransform, setting_columns

SENSORS = ["alt", "a", "b"]
STATS = RegimeStats(settings=["alt"], scale=[10.0], centroids=[[0.0], [30.0]],
                    mean=[[0.0, 5.0, 100.0], [30.0, 50.0, 0.0]], std=[[1.0, 2.0, 0.0], [1.0, 10.0, 4.0]],
                    counts=[10, 10])


def test_each_reading_is_normalised_by_its_nearest_regime():
    x = np.array([[1.0, 7.0, 103.0], [29.0, 40.0, 8.0]])
    z = RegimeTransform(STATS, setting_columns(STATS, SENSORS))(x)
    # a std of 0 (sensor b is constant in regime 0) centres without scaling
    assert z.tolist() == [[1.0, 1.0, 3.0], [-1.0, -1.0, 2.0]]


def test_one_reading_or_a_batch_gives_the_same_bits():
    x = np.random.default_rng(0).normal(15.0, 20.0, (200, 3))
    t = RegimeTransform(STATS, [0])
    assert np.array_equal(t(x), np.stack([t(row) for row in x]))


def test_history_incremental_equals_batch_bit_for_bit():
    x = np.random.default_rng(1).normal(0.0, 30.0, (max(SPANS) * 3, 4))
    h = UnitHistory(4)
    incremental = np.stack([h.push(row) for row in x])
    assert np.array_equal(incremental, history_features(x))
    assert incremental[-1, -1] == len(x)  # time in service: readings seen
    assert incremental[9, 0] == pytest.approx(x[:10, 0].mean())  # fewer than 15 so far: all of them
    assert incremental[-1, 1] == pytest.approx(x[-30:, 0].mean())


def test_feature_set_2_layout_and_series_features():
    spec = WindowSpec(sensors=SENSORS, size=4, step=3, feature_set_version=REGIMES)
    names = feature_names(SENSORS, REGIMES)
    assert spec.n_features == len(names) == len(SENSORS) * 6 + len(history_names(SENSORS))
    assert names[: len(SENSORS) * 6] == feature_names(SENSORS) and names[-1] == "service"
    x = np.random.default_rng(2).normal(15.0, 20.0, (40, 3))
    features, ends = series_features(x, spec, STATS)
    z = RegimeTransform(STATS, [0])(x)
    assert ends.tolist() == list(range(3, 40, 3))
    assert np.array_equal(features[:, :18], extract(sliding_windows(z, spec)))
    assert np.array_equal(features[:, 18:], history_features(z)[ends].astype(np.float32))
    with pytest.raises(ValueError, match="regime statistics"):
        series_features(x, spec)
    assert series_features(x[:3], spec, STATS)[0].shape == (0, spec.n_features)


def test_regime_stats_are_validated():
    with pytest.raises(ValueError, match="one mean row"):
        RegimeStats(settings=["alt"], scale=[1.0], centroids=[[0.0], [1.0]], mean=[[0.0]], std=[[1.0]], counts=[1])
    with pytest.raises(msgspec.ValidationError, match="positive"):
        msgspec.convert({**msgspec.to_builtins(STATS), "scale": [0.0]}, RegimeStats)
    with pytest.raises(ValueError, match="not among"):
        setting_columns(STATS, ["a", "b", "c"])
    with pytest.raises(ValueError, match="unknown"):
        WindowSpec(sensors=SENSORS, size=4, step=1, feature_set_version=3)


def test_a_feature_set_1_manifest_is_written_without_the_regimes_field(initial_model_dir):
    # agents from before feature set 2 refuse unknown fields: a set-1 manifest must not grow "regimes": null
    raw = (initial_model_dir / MANIFEST_FILE).read_bytes()
    assert b"regimes" not in raw
    manifest = load_manifest(raw)
    assert manifest.regimes is None and dump_manifest(manifest, indent=2) + b"\n" == raw
    assert list(json.loads(raw)) == [f for f in ModelManifest.__struct_fields__ if f != "regimes"]


def test_context_features_restate_a_window_from_its_raw_readings():
    """The hub's way back from an agent's raw window (readings with `CONTEXT` before the window, and how many came
    before those) to the window's features, under any regime statistics: the whole history gives the batch row
    bit for bit; a cut history, the same row within the EWM's 3e-6."""
    spec = WindowSpec(sensors=SENSORS, size=8, step=1, feature_set_version=REGIMES)
    x = np.random.default_rng(3).normal(15.0, 20.0, (300, 3))
    features, _ = series_features(x, spec, STATS)
    assert np.array_equal(context_features(x, spec, STATS, 0), features[-1])
    keep = spec.size + CONTEXT
    cut = context_features(x[-keep:], spec, STATS, len(x) - keep)
    assert cut[-1] == features[-1, -1] == len(x)  # time in service counts the readings before the cut
    assert np.allclose(cut, features[-1], rtol=0, atol=1e-4)
    assert not np.array_equal(cut, context_features(x[-keep:], spec, STATS, 0))
    other = RegimeStats(settings=["alt"], scale=[10.0], centroids=[[0.0], [30.0]],
                        mean=[[1.0, 6.0, 90.0], [29.0, 45.0, 2.0]], std=[[2.0, 1.0, 3.0], [1.0, 5.0, 2.0]],
                        counts=[5, 5])
    assert np.array_equal(context_features(x, spec, other, 0), series_features(x, spec, other)[0][-1])
    with pytest.raises(ValueError, match="at least 8 readings"):
        context_features(x[:5], spec, STATS, 0)
    with pytest.raises(ValueError, match="feature set 2"):
        context_features(x, WindowSpec(sensors=SENSORS, size=8, step=1), STATS, 0)
