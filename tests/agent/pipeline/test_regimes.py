"""Feature set 2 on the agent, with real models in onnxruntime: the features it logs are the recipe's, bit for
bit, a feature-set-1 model still serves unchanged, and a swap to another feature set starts the history afresh.
The raw windows it keeps (alarms and the random slice) carry enough readings, and the count before them, for the
hub to restate the features it scored (`shared.features.context_features`)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest

from agent.app import build_agent
from agent.db import RawWindowRow
from agent.pipeline.regimes import RegimePipeline
from agent.settings import AgentSettings
from agent.sources.base import Reading
from agent.sources.memory import ArraySource
from infra.datasets import CMAPSS_SENSORS
from models.cmapss import build_cmapss, load_engines
from shared.features import REGIMES, WindowSpec, context_features, series_features
from shared.history import CONTEXT
from shared.messages import MAX_WINDOW_VALUES, window_numbers
from tests.evaluation.synthetic import write_cmapss
from tests.fixtures.regimes import regime_rows

V2 = WindowSpec(sensors=list(CMAPSS_SENSORS), size=5, step=2, feature_set_version=REGIMES)
V1 = WindowSpec(sensors=list(CMAPSS_SENSORS), size=5, step=2)
SMALL = {"n_estimators": 10}


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("regimes")
    path = write_cmapss(root / "train_REG.txt", regime_rows(12, seed=5))
    out = {}
    for name, window in (("v2", V2), ("v1", V1)):
        build_cmapss(root / name, path=path, window=window, version=name, params=SMALL)
        out[name] = root / name
    out["data"] = path
    return out


def _agent(tmp_path: Path, model_dir: Path, source: ArraySource, sample_rate: float = 0.0):
    settings = AgentSettings(device_id="dev-reg", dev_mode=True, data_dir=tmp_path, initial_model=model_dir,
                             sample_rate=sample_rate)
    return build_agent(settings, source, connect=False)


def _logged(agent) -> list[tuple[str, np.ndarray]]:
    rows = agent.db.conn.execute("SELECT model_version, features FROM predictions ORDER BY id").fetchall()
    return [(v, np.frombuffer(f, dtype=np.float32)) for v, f in rows]


def test_the_agent_logs_the_recipes_feature_set_2_bit_for_bit(tmp_path, versions):
    engines = load_engines(versions["data"])
    units = [1, 2]
    values = np.concatenate([engines[u] for u in units])
    source = ArraySource(CMAPSS_SENSORS, values, units=[str(u) for u in units for _ in engines[u]])
    agent = _agent(tmp_path, versions["v2"], source)
    manifest = agent.model.manifest
    assert manifest.regimes is not None and manifest.regimes.n_regimes == 3
    agent.run()
    expected = np.concatenate([series_features(engines[u], V2, manifest.regimes)[0] for u in units])
    logged = np.stack([f for _, f in _logged(agent)])
    assert logged.shape == expected.shape == (len(expected), V2.n_features)
    assert np.array_equal(logged, expected)
    # an alarm keeps its window's readings as the source gave them, not the normalised ones, and CONTEXT before
    kept = agent.db.conn.execute("SELECT r.unit, r.readings, r.alarm, p.features FROM raw_windows r "
                                 "JOIN predictions p USING (trace_id)").fetchall()
    assert kept
    for unit, readings, alarm, features in kept:
        last = int(np.frombuffer(features, dtype=np.float32)[-1])  # the window's last reading, 1-based
        raw = np.frombuffer(readings, dtype="<f8").reshape(-1, len(CMAPSS_SENSORS))
        assert len(raw) == min(last, V2.size + CONTEXT) and alarm == 1
        assert np.array_equal(raw, engines[int(unit)][last - len(raw):last])
    agent.db.close()


def test_a_kept_window_restates_the_features_the_agent_scored(tmp_path, versions):
    """The key to learning regimes on the hub: from what the agent sends of a kept window (alarm or random sample)
    `context_features` gives back the features the agent scored, exactly while the readings reach back to the
    unit's first, within 1e-4 once they are cut to the window and CONTEXT before it."""
    engines = load_engines(versions["data"])
    units = [4, 5, 6]
    values = np.concatenate([engines[u] for u in units])
    times = 1000.0 + 0.5 * np.arange(len(values))
    offsets = np.cumsum([0] + [len(engines[u]) for u in units[:-1]]).tolist()
    starts = dict(zip([str(u) for u in units], offsets, strict=True))  # each unit's first row in `values`
    source = ArraySource(CMAPSS_SENSORS, values, ts=times, units=[str(u) for u in units for _ in engines[u]])
    agent = _agent(tmp_path, versions["v2"], source, sample_rate=1.0)  # every window drawn into the random slice
    agent.run()
    regimes = agent.model.manifest.regimes
    logged = dict(agent.db.conn.execute("SELECT trace_id, features FROM predictions").fetchall())
    reported = dict(agent.db.conn.execute("SELECT trace_id, reported FROM predictions").fetchall())
    assert set(agent.db.conn.execute("SELECT trace_id FROM raw_windows").fetchall()) == {(t,) for t in logged}
    services = []
    for trace_id, scored in logged.items():
        message = agent.exchange.raw_window(trace_id)
        assert message.available and message.sensors == list(CMAPSS_SENSORS)
        assert message.service is not None
        readings = np.array(message.values).T
        features = context_features(readings, V2, regimes, message.service)
        expected = np.frombuffer(scored, dtype=np.float32)
        if message.service == 0:
            assert np.array_equal(features, expected)
        else:
            assert len(readings) == V2.size + CONTEXT
            assert np.allclose(features, expected, rtol=0, atol=1e-4)
        # the readings and times are the unit's own, the count before them included
        first = int(np.flatnonzero(times == message.timestamps[0])[0])
        assert message.service == first - starts[message.unit]
        assert np.array_equal(readings, values[first:first + len(readings)])
        assert message.timestamps == times[first:first + len(readings)].tolist()
        assert agent.db.raw_window(trace_id).alarm == (reported[trace_id] == "anomaly")  # type: ignore[union-attr]
        services.append(message.service)
    assert min(services) == 0 and max(services) > 0
    agent.db.close()


def test_context_is_cut_to_what_one_message_carries(tmp_path, versions):
    """A long window of many sensors keeps fewer readings before it (the oldest go, `service` counts them), so
    its raw window still goes to the hub; a window too large by itself is refused, as before."""
    engine = load_engines(versions["data"])[7]
    agent = _agent(tmp_path, versions["v2"], ArraySource(CMAPSS_SENSORS, engine[:0]))
    fits = MAX_WINDOW_VALUES // window_numbers(len(CMAPSS_SENSORS), 1)
    long = msgspec.structs.replace(agent.model.manifest, window=msgspec.structs.replace(V2, size=fits - 10))
    pipeline = RegimePipeline(long, CMAPSS_SENSORS)
    assert pipeline.keep == fits < long.window.size + CONTEXT
    rows = np.tile(engine, (fits // len(engine) + 2, 1))
    for i, row in enumerate(rows):
        pipeline.reading(float(i), row, "7")
    raw = pipeline.raw_window("7")
    assert raw.readings.shape == (fits, len(CMAPSS_SENSORS)) and raw.service == len(rows) - fits
    assert np.array_equal(raw.readings, rows[-fits:]) and raw.times.tolist() == list(range(len(rows) - fits, len(rows)))
    names = msgspec.json.encode(list(CMAPSS_SENSORS)).decode()
    agent.db.write_batch((), (), [
        RawWindowRow("fits", 1.0, "7", names, raw.times.tobytes(), raw.readings.tobytes(), service=raw.service),
        RawWindowRow("too-long", 2.0, "7", names, np.zeros(fits + 1).tobytes(),
                     np.zeros((fits + 1, len(CMAPSS_SENSORS))).tobytes(), service=0),
    ])
    sent = agent.exchange.raw_window("fits")
    assert sent.available and sent.service == len(rows) - fits and len(sent.timestamps) == fits
    assert not agent.exchange.raw_window("too-long").available
    too_long = msgspec.structs.replace(long, window=msgspec.structs.replace(V2, size=fits + 1))
    assert RegimePipeline(too_long, CMAPSS_SENSORS).keep == fits + 1  # the window itself is never cut
    agent.db.close()


def test_a_swap_to_another_feature_set_and_back_restarts_the_history(tmp_path, versions):
    engine = load_engines(versions["data"])[3]
    agent = _agent(tmp_path, versions["v2"], ArraySource(CMAPSS_SENSORS, engine[:0]))
    v1 = agent.store.load(agent.store.install(versions["v1"]).version)
    v2 = agent.model
    readings = iter(Reading(float(i), row, "3") for i, row in enumerate(engine))
    for _ in range(20):
        agent.process(next(readings))
    agent.switch_model(v1)  # feature set 1: raw readings, no history
    for _ in range(10):
        agent.process(next(readings))
    agent.switch_model(v2)
    for _ in range(10):
        agent.process(next(readings))
    agent.commit()
    logged = _logged(agent)
    widths = [(v, len(f)) for v, f in logged]
    assert widths == [("v2", V2.n_features)] * 8 + [("v1", V1.n_features)] * 3 + [("v2", V2.n_features)] * 3
    # the last feature, time in service, counts the readings since the unit's history (re)started
    assert [float(f[-1]) for v, f in logged if v == "v2"] == [5, 7, 9, 11, 13, 15, 17, 19, 5, 7, 9]
    assert agent.counters.extra["window_resets"] == 2
    agent.db.close()

