"""C-MAPSS replays stamped on a clock: engines one after the other get increasing times, windows stay per engine."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from agent.pipeline.windowing import Windower
from agent.sources.replay import CmapssSource
from infra.datasets import CMAPSS_SENSORS
from shared.errors import SourceError
from shared.features import WindowSpec
from tests.evaluation.synthetic import synthetic_rows, write_cmapss


@pytest.fixture
def two_engines(tmp_path: Path) -> Path:
    rows = synthetic_rows(3, seed=2, min_life=8, max_life=12)
    return write_cmapss(tmp_path / "train.txt", rows)


def test_without_a_clock_ts_is_the_cycle(two_engines: Path) -> None:
    with CmapssSource(two_engines) as source:
        readings = list(source)
    assert [r.ts for r in readings if r.unit == "2"] == [float(c) for c in range(1, 1 + sum(r.unit == "2"
                                                                                         for r in readings))]


def test_reading_i_is_stamped_start_plus_i_over_rate(two_engines: Path) -> None:
    with CmapssSource(two_engines, start_ts=1_000.0, units=[1, 3]) as plain:
        expected = [(r.unit, r.values.tolist()) for r in plain]
    source = CmapssSource(two_engines, start_ts=1_000.0, rate=0.0, units=[1, 3])
    readings = list(source)
    assert [(r.unit, r.values.tolist()) for r in readings] == expected  # same readings, only ts differs
    assert [r.ts for r in readings] == [1_000.0 + i for i in range(len(readings))]  # rate 0: a second apart
    assert {r.unit for r in readings} == {"1", "3"}
    # a paced replay's clock follows its rate, across the engine boundary
    fast = CmapssSource(two_engines, start_ts=50.0, rate=1_000.0)
    times = [fast.read(1.0).ts for _ in range(12)]  # type: ignore[union-attr]
    assert times == [50.0 + i / 1_000.0 for i in range(12)]
    assert all(b > a for a, b in itertools.pairwise(times))
    fast.close()


def test_windows_never_span_two_engines_on_the_clock(two_engines: Path) -> None:
    spec = WindowSpec(sensors=list(CMAPSS_SENSORS), size=4, step=1)
    windower = Windower(spec, CMAPSS_SENSORS)
    rows = np.loadtxt(two_engines)
    emitted = []
    for reading in CmapssSource(two_engines, start_ts=0.0, rate=10.0):
        out = windower.push(reading.ts, reading.values, reading.unit)
        if out is not None:
            start = float(out.starts[0])
            cycle = round(reading.ts * 10.0)  # reading index on the clock
            emitted.append((reading.unit, start, reading.ts, out.window(0)[1], cycle))
    for unit, start, end, window, index in emitted:
        assert unit is not None
        engine = rows[rows[:, 0] == int(unit)][:, 2:]
        offset = int(np.flatnonzero(rows[:, 0] == int(unit))[0])
        last = index - offset  # 0-based cycle of the window's last reading within its engine
        assert last >= spec.size - 1  # a window starts only once its own engine has filled it
        assert np.array_equal(window, engine[last - spec.size + 1 : last + 1])
        assert end - start == pytest.approx((spec.size - 1) / 10.0)


def test_a_non_finite_clock_origin_is_refused(two_engines: Path) -> None:
    with pytest.raises(SourceError, match="start_ts"):
        CmapssSource(two_engines, start_ts=float("nan"))


def test_the_agent_settings_reach_the_replay_clock(two_engines: Path, tmp_path: Path) -> None:
    from agent.app import build_source
    from agent.settings import AgentSettings

    settings = AgentSettings(device_id="gw-0", dev_mode=True, data_dir=tmp_path / "a",
                             source={"kind": "cmapss", "path": str(two_engines), "rate": 0, "start_ts": 5_000.0})
    with build_source(settings) as source:
        first = next(iter(source))
    assert first.ts == 5_000.0 and first.unit == "1"
