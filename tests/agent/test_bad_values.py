"""One bad sensor value never stops the agent: values beyond float32, bad unit names and broken readings are
counted (stats `bad_readings` / `bad_rows`) and skipped where they enter, and the loop goes on (issue 10, item 2)."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import numpy as np
import pytest

from agent.app import build_agent
from agent.runtime import Agent
from agent.settings import AgentSettings
from agent.sources.base import Reading, ReadingBatch
from agent.sources.memory import ArraySource
from agent.sources.mqtt import MqttSource
from fleetloop.devbroker import HUB_USER, DevBroker
from shared.codec import decode
from shared.messages import Stats
from shared.wire import replace
from sim import SENSORS
from tests.fixtures.broker import Clients, publish

WINDOW, STEP = 30, 5  # the test model's window spec


def _stats(agent: Agent) -> Stats:
    """The sum of every stats message the agent queued."""
    rows = [decode(Stats, r.payload) for r in agent.db.due_outbox(1e12, 10_000) if r.topic.endswith("/stats")]
    assert rows
    return replace(rows[-1], bad_readings=sum(s.bad_readings for s in rows), bad_rows=sum(s.bad_rows for s in rows),
                   windows=sum(s.windows for s in rows))


def _agent(tmp_path: Path, model: Path, source: object) -> Agent:
    settings = AgentSettings(device_id="dev-bad", dev_mode=True, data_dir=tmp_path / "a", initial_model=model,
                             sample_rate=1.0)  # every window becomes a message: all of them are validated
    return build_agent(settings, source, connect=False)  # type: ignore[arg-type]


def _values(n: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, len(SENSORS))) + 20


@pytest.mark.parametrize("bad", [1e39, -1e39, 3.5e38, np.nan, np.inf, -np.inf])
def test_values_beyond_float32_or_not_finite_are_counted_and_skipped(tmp_path, initial_model_dir, bad) -> None:
    values = _values(200)
    values[60:63, 2] = bad  # three readings mid-stream, inside what would be windows
    agent = _agent(tmp_path, initial_model_dir, ArraySource(SENSORS, values))
    counters = agent.run()
    stats = _stats(agent)
    assert counters.readings == 200
    assert stats.bad_readings == 3
    assert counters.windows == stats.windows == (200 - 3 - WINDOW) // STEP + 1


def test_largest_float32_is_still_a_reading(tmp_path, initial_model_dir) -> None:
    values = _values(60)
    values[40, 0] = float(np.finfo(np.float32).max)
    agent = _agent(tmp_path, initial_model_dir, ArraySource(SENSORS, values))
    agent.run()
    assert _stats(agent).bad_readings == 0


BAD_UNITS = ["u" * 65, "pump-\udcff", "\ud800", "x\x00y"]


def test_bad_unit_names_are_counted_and_skipped(tmp_path, initial_model_dir) -> None:
    run = WINDOW + 10  # each bad unit sends enough readings for a window of its own
    n = 100 + run * len(BAD_UNITS)
    units: list[str | None] = ["pump-1"] * 50 + [u for u in BAD_UNITS for _ in range(run)] + ["pump-1"] * 50
    agent = _agent(tmp_path, initial_model_dir, ArraySource(SENSORS, _values(n), units=units))
    counters = agent.run()
    stats = _stats(agent)
    assert counters.readings == n
    assert stats.bad_readings == run * len(BAD_UNITS)
    assert counters.windows == stats.windows == (100 - WINDOW) // STEP + 1
    assert {r["unit"] for r in agent.db.predictions_between(0, 1e12)} == {"pump-1"}


def test_reading_problem_names_what_is_wrong() -> None:
    from agent.sources.base import reading_problem

    ok = np.zeros(3)
    assert reading_problem(Reading(1.0, ok, "pump-1")) is None
    assert reading_problem(Reading(1.0, ok, "u" * 64)) is None
    assert reading_problem(Reading(1.0, ok, None)) is None
    assert "float32" in (reading_problem(Reading(1.0, np.array([0.0, 1e39, 0.0]), None)) or "")
    assert "64" in (reading_problem(Reading(1.0, ok, "u" * 65)) or "")
    assert "UTF-8" in (reading_problem(Reading(1.0, ok, "\udcff")) or "")
    assert "control" in (reading_problem(Reading(1.0, ok, "a\nb")) or "")
    assert "time" in (reading_problem(Reading(float("nan"), ok, None)) or "")
    # NaN means "missing" and is the windower's business, not a malformed reading
    assert reading_problem(Reading(1.0, np.array([np.nan, 0.0, 0.0]), None)) is None


class _BrokenSource(ArraySource):
    """A source with a bug: every 40th reading has the wrong number of values."""

    read_many = None  # one reading at a time, through the buggy read

    def read(self, timeout: float) -> Reading | None:
        reading = super().read(timeout)
        if reading is not None and self._i % 40 == 0:
            return Reading(reading.ts, reading.values[:2], reading.unit)
        return reading


def test_an_exception_from_one_reading_does_not_stop_the_loop(tmp_path, initial_model_dir, caplog) -> None:
    agent = _agent(tmp_path, initial_model_dir, _BrokenSource(SENSORS, _values(400)))
    with caplog.at_level(logging.ERROR, logger="agent.runtime"):
        counters = agent.run()
    assert counters.readings == 400
    assert counters.extra["reading_errors"] == 10
    assert _stats(agent).bad_readings == 10
    # a programming error is logged with its traceback, once per kind: not ten times, not silently
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "Traceback" in caplog.text


def test_mqtt_source_refuses_bad_units_and_values_at_the_edge(broker: DevBroker, mqtt_clients: Clients) -> None:
    topic = f"{broker.prefix}/test-sensors/{uuid.uuid4().hex[:8]}"
    source = MqttSource(broker.host, broker.port, topic, ["temp", "rpm"], username=HUB_USER,
                        password=broker.password(HUB_USER))
    try:
        assert source.wait_subscribed(5.0)
        sender = mqtt_clients.connect(broker, HUB_USER)
        good = {"ts": 1.0, "values": {"temp": 70.5, "rpm": 1500}}
        payloads: list[bytes | str] = [
            json.dumps({**good, "values": {"temp": 1e39}}),
            json.dumps({**good, "values": {"temp": -1e39}}),
            json.dumps({**good, "unit": "u" * 65}),
            json.dumps({**good, "unit": "\udcff"}),  # a lone surrogate, JSON-escaped
            b'{"ts": 1.0, "values": {"temp": 1}, "unit": "pump-\xed\xb3\xbf"}',  # an encoded surrogate: not UTF-8
            b'{"ts": 1.0, "values": {"temp": 1}, "unit": "pump-\xff"}',  # not UTF-8 at all
            json.dumps({**good, "ts": 2.0, "unit": "pump-2"}),
        ]
        for payload in payloads:
            publish(sender, topic, payload)
        reading = source.read(5.0)
        assert reading is not None and (reading.ts, reading.unit) == (2.0, "pump-2")
        assert source.bad_rows == 6
    finally:
        source.close()


def test_a_live_source_s_readings_one_at_a_time_are_handled_as_process_handles_them(tmp_path, initial_model_dir):
    """`process_batch` of one reading takes a shortcut (`Agent._process_single`): every reading the careful path
    (`process`) would stop, it must stop the same way, and every window it scores must be the same window."""
    rng = np.random.default_rng(4)
    values = rng.normal(size=(400, len(SENSORS))) + 20
    values[37, 2] = np.nan
    values[90, 0] = np.inf
    values[150, 4] = 1e39  # beyond float32
    values[151, 1] = -np.inf
    ts = np.arange(400, dtype=np.float64)
    ts[200] = np.nan
    units: list[str | None] = ["pump-1"] * 400
    units[250] = "bad\nunit"
    units[260] = "x" * 100
    agents = []
    for name in ("shortcut", "careful"):
        settings = AgentSettings(device_id="dev-live", dev_mode=True, data_dir=tmp_path / name,
                                 initial_model=initial_model_dir, sample_rate=0.2)
        agent = build_agent(settings, ArraySource(SENSORS, values), connect=False)
        for i in range(len(ts)):
            if name == "shortcut":
                agent.process_batch(ReadingBatch(ts[i : i + 1], values[i : i + 1], units[i : i + 1]))
            else:
                agent.process(Reading(float(ts[i]), values[i], units[i]))
        agent.commit()
        agents.append(agent)
    shortcut, careful = agents
    assert shortcut.counters.readings == careful.counters.readings == 400
    assert shortcut.counters.windows == careful.counters.windows > 0
    # refused where they enter: the value beyond float32, the NaN time and the two bad unit names
    assert shortcut.counters.extra.get("refused_readings") == careful.counters.extra.get("refused_readings") == 4
    assert shortcut.windower.bad_readings == careful.windower.bad_readings == 3  # missing: the NaN and the infs
    assert shortcut.stats.bad_readings == careful.stats.bad_readings
    columns = "window_start, window_end, unit, features, score, decision"
    rows = [a.db.conn.execute(f"SELECT {columns} FROM predictions ORDER BY id").fetchall() for a in agents]
    assert rows[0] == rows[1] and len(rows[0]) == shortcut.counters.windows
