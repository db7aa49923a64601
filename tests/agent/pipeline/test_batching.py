"""Batching is invisible: readings handed over in bulk give the predictions, samples and stats of one at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.app import build_agent
from agent.settings import AgentSettings
from agent.sources.memory import ArraySource
from sim import SENSORS
from sim.dataset import default_fleet
from sim.machine import SimulatedMachine


class _OneByOne(ArraySource):
    read_many = None  # the agent drains it with read(0), as it does a sensor source


def _run(tmp_path: Path, model: Path, source: ArraySource, name: str, live: bool = False) -> tuple[list[tuple], int,
                                                                                                  int]:
    """Run an agent over `source`: its loop, or (`live`) `Agent.process` reading by reading, as a live source's
    agent sees them one at a time."""
    settings = AgentSettings(device_id="dev-batch", dev_mode=True, data_dir=tmp_path / name, initial_model=model,
                             sample_rate=0.3, raw_windows_keep=50)
    agent = build_agent(settings, source, connect=False)
    if live:
        while (reading := source.read(0.0)) is not None:
            agent.process(reading)
        agent.commit()
        counters = agent.counters
    else:
        counters = agent.run(drain_s=0.0)
    rows = agent.db.query("SELECT unit, window_start, window_end, features, score, decision, reported "
                          "FROM predictions ORDER BY id", [])
    raw = agent.db.query("SELECT times, readings FROM raw_windows ORDER BY ts, trace_id", [])
    agent.db.close()
    return [tuple(r.values()) for r in rows], counters.samples, len(raw)


def test_bulk_and_one_by_one_agree(tmp_path: Path, initial_model_dir: Path) -> None:
    n = 700
    values = SimulatedMachine("m-batch", 11, default_fleet()[0]).run(n).values.copy()
    values[::97, 2] = np.nan  # missing readings: skipped by the windower, never in a window
    values[300:340] *= 3.0  # a burst of alarms
    units = ["pump-1" if i % 3 else "pump-2" for i in range(n)]  # interleaved units: windows never mix them
    ts = np.arange(n, dtype=np.float64)
    bulk = _run(tmp_path, initial_model_dir, ArraySource(SENSORS, values, ts, units), "bulk")
    single = _run(tmp_path, initial_model_dir, _OneByOne(SENSORS, values, ts, units), "single")
    live = _run(tmp_path, initial_model_dir, ArraySource(SENSORS, values, ts, units), "live", live=True)
    assert bulk[0] and bulk[1] and bulk[2]  # predictions, samples and alarm windows all occur
    assert bulk == single
    assert bulk == live  # one reading a call (Windower.push, WindowState.push_one): the same bytes
