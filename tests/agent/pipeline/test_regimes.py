"""Feature set 2 on the agent, with real models in onnxruntime: the features it logs are the recipe's, bit for
bit, a feature-set-1 model still serves unchanged, and a swap to another feature set starts the history afresh."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.app import build_agent
from agent.settings import AgentSettings
from agent.sources.base import Reading
from agent.sources.memory import ArraySource
from infra.datasets import CMAPSS_SENSORS
from models.cmapss import build_cmapss, load_engines
from shared.features import REGIMES, WindowSpec, series_features
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


def _agent(tmp_path: Path, model_dir: Path, source: ArraySource):
    settings = AgentSettings(device_id="dev-reg", dev_mode=True, data_dir=tmp_path, initial_model=model_dir,
                             sample_rate=0.0)
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
    # an alarm keeps its window's readings as the source gave them, not the normalised ones
    kept = agent.db.conn.execute("SELECT r.unit, r.readings, p.features FROM raw_windows r JOIN predictions p "
                                 "USING (trace_id)").fetchall()
    assert kept
    for unit, readings, features in kept:
        service = int(np.frombuffer(features, dtype=np.float32)[-1])  # the window's last reading, 1-based
        window = np.frombuffer(readings, dtype="<f8").reshape(V2.size, -1)
        assert np.array_equal(window, engines[int(unit)][service - V2.size:service])
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

