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
    online = [extract(win) for i, row in enumerate(series) if (win := w.push(float(i), row)) is not None]
    offline = extract(sliding_windows(series[:, [1, 0]], spec))
    np.testing.assert_array_equal(np.stack(online), offline)


def test_bad_readings_are_counted_and_skipped():
    spec = WindowSpec(sensors=["a"], size=3, step=1)
    w = Windower(spec, ["a", "b"])
    outs = [w.push(0, np.array([1.0, np.nan])),  # NaN in an unused sensor is fine
            w.push(1, np.array([np.nan, 0.0])), w.push(2, np.array([np.inf, 0.0])),
            w.push(3, np.array([2.0, 0.0])), w.push(4, np.array([3.0, 0.0]))]
    assert w.bad_readings == 2
    assert outs[-1] is not None
    assert outs[-1][:, 0].tolist() == [1.0, 2.0, 3.0]


def test_units_never_share_a_window():
    spec = WindowSpec(sensors=["a"], size=2, step=1)
    w = Windower(spec, ["a"])
    assert w.push(0, np.array([1.0]), "u1") is None
    assert w.push(0, np.array([100.0]), "u2") is None
    win = w.push(1, np.array([2.0]), "u1")
    assert win is not None and win[:, 0].tolist() == [1.0, 2.0]
    assert w.window_start("u1") == 0


def test_missing_sensor_is_a_config_error():
    with pytest.raises(ConfigError, match="vibration"):
        Windower(WindowSpec(sensors=["vibration"], size=2, step=1), ["temp"])
