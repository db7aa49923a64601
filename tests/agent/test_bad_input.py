"""Bad input never stops the loop: it is counted, logged, skipped and visible in the stats message."""

from __future__ import annotations

import logging

import numpy as np

from agent.app import build_agent
from agent.settings import AgentSettings
from agent.sources.memory import ArraySource
from agent.sources.replay import CsvSource
from shared.codec import decode
from shared.messages import Stats
from sim import SENSORS


def _stats(agent) -> Stats:
    rows = [r for r in agent.db.due_outbox(1e12, 1000) if r.topic.endswith("/stats")]
    return decode(Stats, rows[-1].payload)


def test_nan_inf_and_malformed_rows_are_counted_and_skipped(tmp_path, initial_model_dir, caplog):
    values = np.random.default_rng(0).normal(size=(400, len(SENSORS))) + 20
    values[50, 1] = np.nan
    values[51, 3] = np.inf
    values[52, 0] = -np.inf
    csv = tmp_path / "readings.csv"
    lines = ["t;" + ";".join(SENSORS)]
    for i, row in enumerate(values):
        lines.append(f"{i};" + ";".join(repr(float(v)) for v in row))
    lines[100] = "100;1.0;oops;3"  # too few columns and a non-number
    lines[101] = "101;" + ";".join(["x"] * len(SENSORS))
    csv.write_text("\n".join(lines) + "\n")

    settings = AgentSettings(device_id="dev-bad", dev_mode=True, data_dir=tmp_path / "a",
                             initial_model=initial_model_dir)
    agent = build_agent(settings, CsvSource(csv, time_column="t"), connect=False)
    with caplog.at_level(logging.WARNING):
        counters = agent.run()
    stats = _stats(agent)
    assert stats.bad_rows == 2
    assert stats.bad_readings == 3  # the NaN, +inf and -inf rows: the loop went on past them
    assert counters.readings == 400 - 2
    expected_windows = (400 - 2 - 3 - 30) // 5 + 1
    assert counters.windows == stats.windows == expected_windows
    assert "skipped 3 readings" in caplog.text


def test_inference_errors_are_counted_not_fatal(tmp_path, initial_model_dir):
    # commit_every bounds a batch: windows are scored 16 at a time, and a failed call loses its 16
    settings = AgentSettings(device_id="dev-err", dev_mode=True, data_dir=tmp_path, initial_model=initial_model_dir,
                             commit_every=16)
    values = np.random.default_rng(1).normal(size=(200, len(SENSORS)))
    agent = build_agent(settings, ArraySource(SENSORS, values), connect=False)
    real = agent.model.score
    calls = {"n": 0, "failed": 0}

    def flaky(features):
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            calls["failed"] += len(features)
            raise RuntimeError("onnxruntime exploded")
        return real(features)

    agent.model.score = flaky  # type: ignore[method-assign]
    counters = agent.run()
    assert calls["n"] > 3
    assert counters.inference_errors == calls["failed"] > 0
    spec = agent.model.manifest.window
    assert counters.windows + counters.inference_errors == (200 - spec.size) // spec.step + 1
    assert _stats(agent).inference_errors == counters.inference_errors


def test_a_message_the_contract_refuses_is_counted_and_its_window_still_logged(tmp_path, initial_model_dir, caplog):
    # messages are built at the commit: a score outside [0, 1] (a model bug) loses the message, not the transaction
    settings = AgentSettings(device_id="dev-refused", dev_mode=True, data_dir=tmp_path, initial_model=initial_model_dir,
                             sample_rate=0.0)
    values = np.random.default_rng(2).normal(size=(100, len(SENSORS)))
    agent = build_agent(settings, ArraySource(SENSORS, values), connect=False)
    agent.model.score = lambda features: np.full(len(features), 1.5)  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="agent.runtime"):
        counters = agent.run()
    assert counters.windows == counters.anomalies > 0
    assert counters.extra["refused_messages"] == counters.anomalies
    assert agent.db.query("SELECT count(*) AS n FROM predictions", [])[0]["n"] == counters.windows
    assert not [r for r in agent.db.due_outbox(1e12, 1000) if r.topic.endswith("/anomaly")]
    assert "refused by the wire contract" in caplog.text
