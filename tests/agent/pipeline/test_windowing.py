from __future__ import annotations

import numpy as np
import pytest

from agent.pipeline.windowing import Windower
from shared.errors import ConfigError
from shared.features import WindowSpec, extract, sliding_windows


def test_windows_match_offline_sliding_windows():
    """Online windowing yields exactly the windows training sees: no training/serving skew."""
    spec = WindowSpec(sensors=["b", "a"], size=5, step=2)
    rng = np.random.default_rng(0)
    series = rng.normal(size=(40, 3))  # source columns a, b, c
    w = Windower(spec, ["a", "b", "c"])
    # a window's readings and features, taken when it is emitted (an Emitted is valid until the next push)
    emitted = [(out.window(0)[1], out.features[0]) for i, row in enumerate(series)
               if (out := w.push(float(i), row)) is not None]
    offline = sliding_windows(series[:, [1, 0]], spec)
    np.testing.assert_array_equal(np.stack([readings for readings, _ in emitted]), offline)
    np.testing.assert_allclose(np.stack([features for _, features in emitted]), extract(offline), rtol=2**-22)
    batched = w.push_many(np.arange(40.0, 80.0), series)  # the same readings again, handed over at once
    assert batched.ends.tolist() == [i for i in range(40) if (40 + i - 4) % 2 == 0]


def test_bad_readings_are_counted_and_skipped():
    spec = WindowSpec(sensors=["a"], size=3, step=1)
    w = Windower(spec, ["a", "b"])
    outs = [w.push(0, np.array([1.0, np.nan])),  # NaN in an unused sensor is fine
            w.push(1, np.array([np.nan, 0.0])), w.push(2, np.array([np.inf, 0.0])),
            w.push(3, np.array([2.0, 0.0])), w.push(4, np.array([3.0, 0.0]))]
    assert w.bad_readings == 2
    last = outs[-1]
    assert last is not None
    times, rows = last.window(0)
    assert rows[:, 0].tolist() == [1.0, 2.0, 3.0] and times.tolist() == [0.0, 3.0, 4.0]
    assert last.starts.tolist() == [0.0]


def test_units_never_share_a_window():
    spec = WindowSpec(sensors=["a"], size=2, step=1)
    w = Windower(spec, ["a"])
    assert w.push(0, np.array([1.0]), "u1") is None
    assert w.push(0, np.array([100.0]), "u2") is None
    out = w.push(1, np.array([2.0]), "u1")
    assert out is not None and out.window(0)[1][:, 0].tolist() == [1.0, 2.0]
    assert out.starts.tolist() == [0.0]


def test_missing_sensor_is_a_config_error():
    with pytest.raises(ConfigError, match="vibration"):
        Windower(WindowSpec(sensors=["vibration"], size=2, step=1), ["temp"])
